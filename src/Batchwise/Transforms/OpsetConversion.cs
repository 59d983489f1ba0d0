using System.Globalization;
using Batchwise.Onnx;
using Google.Protobuf;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>
/// Converts a model to another default-domain opset. Up-conversion walks each node through every version of its
/// operator between the two opsets and applies an adapter where the signature changed (Upsample to Resize, attributes
/// that became inputs, Softmax's coerce-to-2D semantics before opset 13, ...); a version that only added types or
/// attributes with behaviour-preserving defaults needs none. Down-conversion is done only when no operator of the
/// model changed between the two opsets; otherwise it is refused, naming the operators.
/// </summary>
public sealed class OpsetConversion : IModelTransform
{
    /// <summary>Oldest opset converted from or to.</summary>
    public const long MinOpset = 7;

    /// <summary>Newest opset converted to.</summary>
    public const long MaxOpset = 21;

    // Operators whose reductions took their axes as an input from opset 18 (ReduceSum already at 13).
    private static readonly string[] Reductions18 = ["ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare"];

    // Experimental operators of opsets 1-9 that ONNX removed (not in the changelog); ImageScaler is rewritten, the others refused.
    private static readonly HashSet<string> RemovedExperimental = new(StringComparer.Ordinal)
    {
        "ATen", "Affine", "ConstantFill", "Crop", "DynamicSlice", "GRUUnit", "GivenTensorFill", "ImageScaler", "ParametricSoftplus", "Scale", "ScaledTanh",
    };

    // Operators deprecated at a version in favour of another (their adapter at that version replaces them).
    private static readonly Dictionary<string, int> Deprecated = new(StringComparer.Ordinal) { ["Upsample"] = 10, ["Scatter"] = 11 };

    private static readonly Dictionary<(string Op, int Version), Action<Rewrite, OnnxProto.NodeProto>> Adapters = CreateAdapters();

    /// <summary>Converts to <paramref name="target"/>; <paramref name="reason"/> (e.g. "--fp16 needs opset 13") is said in the summary when the conversion was not asked for.</summary>
    public OpsetConversion(long target, string? reason = null)
    {
        if (target < MinOpset || target > MaxOpset)
        {
            throw new BatchwiseException($"--opset {target} is outside the opsets Batchwise converts between ({MinOpset} to {MaxOpset})", "Write e.g. --opset 17.");
        }

        Target = target;
        Reason = reason;
    }

    /// <summary>The opset the model ends up in.</summary>
    public long Target { get; }

    /// <summary>Why the conversion runs when the user did not ask for it, or null.</summary>
    public string? Reason { get; }

    /// <inheritdoc/>
    public string Name => "opset";

    /// <summary>The minimum IR version for each opset (ONNX's release table).</summary>
    public static long IrVersionFor(long opset) => opset switch
    {
        <= 8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        <= 14 => 7,
        <= 18 => 8,
        <= 20 => 9,
        <= 22 => 10,
        _ => 11,
    };

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var source = model.Opset;
        if (source == Target)
        {
            return $"already at opset {Target}; unchanged";
        }

        if (source < MinOpset)
        {
            throw new BatchwiseException($"'{model.Name}' uses opset {source}; Batchwise converts from opset {MinOpset} on", "Convert it with onnx.version_converter first.");
        }

        var ops = AllNodes(model.Graph).Where(n => IsDefaultDomain(n.Domain)).Select(n => n.OpType).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        string adapted;
        if (Target < source)
        {
            ConvertDown(model, source, ops);
            adapted = "no operator of the model changed between the two opsets";
        }
        else
        {
            var rewrite = new Rewrite(model, source, Target);
            rewrite.ConvertGraph(model.Graph);
            adapted = rewrite.Changes.Count == 0
                ? "no operator of the model needed an adapter"
                : "adapted " + string.Join(", ", rewrite.Changes.Select(c => c.Value == 1 ? c.Key : string.Create(CultureInfo.InvariantCulture, $"{c.Key} x{c.Value}")));
        }

        SetOpset(model, Target);
        model.Graph.ValueInfo.Clear();
        model.Validate();
        var why = Reason is null ? string.Empty : $" ({Reason})";
        return $"opset {source} -> {Target}{why}; {adapted}";
    }

    private void ConvertDown(OnnxModel model, long source, IReadOnlyList<string> ops)
    {
        var changed = new List<string>();
        foreach (var op in ops)
        {
            var from = OperatorVersions.At(op, source);
            var to = OperatorVersions.At(op, Target);
            if (to is null)
            {
                changed.Add(from is null ? $"{op} (unknown)" : $"{op} (only from opset {OperatorVersions.SinceVersions[op][0]})");
            }
            else if (from != to)
            {
                changed.Add($"{op} (changed at opset {from})");
            }
        }

        if (changed.Count > 0)
        {
            throw new BatchwiseException(
                $"Cannot convert '{model.Name}' down from opset {source} to {Target}: {string.Join(", ", changed)}; down-conversion is done only where no operator of the model changed between the two opsets",
                $"Keep opset {source} (ONNX Runtime runs it), or convert with onnx.version_converter.convert_version(model, {Target}).");
        }
    }

    private static void SetOpset(OnnxModel model, long target)
    {
        var imports = model.Proto.OpsetImport.Where(o => IsDefaultDomain(o.Domain)).ToList();
        foreach (var i in imports)
        {
            i.Version = target;
        }

        model.Proto.IrVersion = Math.Max(model.Proto.IrVersion, Math.Max(IrVersionFor(target), 4));
    }

    private static bool IsDefaultDomain(string domain) => domain.Length == 0 || domain == "ai.onnx";

    private static IEnumerable<OnnxProto.NodeProto> AllNodes(OnnxProto.GraphProto graph)
    {
        foreach (var n in graph.Node)
        {
            yield return n;
            foreach (var a in n.Attribute)
            {
                foreach (var g in a.Graphs.Append(a.G).Where(g => g is not null))
                {
                    foreach (var inner in AllNodes(g))
                    {
                        yield return inner;
                    }
                }
            }
        }
    }

    private static Dictionary<(string, int), Action<Rewrite, OnnxProto.NodeProto>> CreateAdapters()
    {
        var a = new Dictionary<(string, int), Action<Rewrite, OnnxProto.NodeProto>>
        {
            [("Upsample", 9)] = (r, n) => r.AttributeToInput(n, "scales", 1, ElementType.Float, required: true),
            [("Upsample", 10)] = (r, n) =>
            {
                n.OpType = "Resize";
                r.Note("Upsample -> Resize");
            },
            [("Resize", 11)] = (r, n) => r.Resize11(n),
            [("Resize", 13)] = (r, n) =>
            {
                if (r.Text(n, "coordinate_transformation_mode") == "tf_half_pixel_for_nn")
                {
                    throw r.Refuse(n, 13, "its coordinate_transformation_mode tf_half_pixel_for_nn was removed at opset 13 and has no equivalent");
                }
            },
            [("Scatter", 11)] = (r, n) =>
            {
                n.OpType = "ScatterElements";
                r.Note("Scatter -> ScatterElements");
            },
            [("Clip", 11)] = (r, n) => r.Clip11(n),
            [("Pad", 11)] = (r, n) => r.Pad11(n),
            [("BatchNormalization", 9)] = (r, n) =>
            {
                if (r.Int(n, "spatial", 1) != 1)
                {
                    throw r.Refuse(n, 9, "spatial=0 (per-activation statistics) was removed at opset 9");
                }

                r.RemoveAttribute(n, "spatial");
                r.DropUnusedOutputs(n, 1, 9);
            },
            [("BatchNormalization", 14)] = (r, n) => r.DropUnusedOutputs(n, 1, 14),
            [("Dropout", 10)] = (r, n) => r.DropUnusedOutputs(n, 1, 10),
            [("Dropout", 12)] = (r, n) =>
            {
                if (r.Attribute(n, "ratio") is { } ratio)
                {
                    r.RemoveAttribute(n, "ratio");
                    r.SetInput(n, 1, r.Constant(n, "ratio", GraphSurgery.FloatTensor(string.Empty, [], [ratio.F])));
                    r.Note("Dropout ratio");
                }
            },
            [("Slice", 10)] = (r, n) =>
            {
                var starts = r.Ints(n, "starts") ?? throw r.Refuse(n, 10, "it has no starts attribute");
                var ends = r.Ints(n, "ends") ?? throw r.Refuse(n, 10, "it has no ends attribute");
                var axes = r.Ints(n, "axes");
                foreach (var name in new[] { "starts", "ends", "axes" })
                {
                    r.RemoveAttribute(n, name);
                }

                r.SetInput(n, 1, r.Int64s(n, "starts", starts));
                r.SetInput(n, 2, r.Int64s(n, "ends", ends));
                if (axes is not null)
                {
                    r.SetInput(n, 3, r.Int64s(n, "axes", axes));
                }

                r.Note("Slice starts/ends/axes");
            },
            [("TopK", 10)] = (r, n) =>
            {
                var k = r.Int(n, "k", -1);
                r.RemoveAttribute(n, "k");
                r.SetInput(n, 1, r.Int64s(n, "k", [k]));
                r.Note("TopK k");
            },
            [("Split", 13)] = (r, n) => r.AttributeToInput(n, "split", 1, ElementType.Int64, required: false),
            [("Split", 18)] = (r, n) =>
            {
                if (n.Input.Count < 2 || n.Input[1].Length == 0)
                {
                    r.SetAttribute(n, new OnnxProto.AttributeProto { Name = "num_outputs", Type = OnnxProto.AttributeProto.Types.AttributeType.Int, I = n.Output.Count });
                    r.Note("Split num_outputs");
                }
            },
            [("Squeeze", 13)] = (r, n) => r.AttributeToInput(n, "axes", 1, ElementType.Int64, required: false),
            [("Unsqueeze", 13)] = (r, n) => r.AttributeToInput(n, "axes", 1, ElementType.Int64, required: true),
            [("ReduceSum", 13)] = (r, n) => r.AttributeToInput(n, "axes", 1, ElementType.Int64, required: false),
            [("Softmax", 13)] = (r, n) => r.CoerceTo2D(n),
            [("LogSoftmax", 13)] = (r, n) => r.CoerceTo2D(n),
            [("Hardmax", 13)] = (r, n) => r.CoerceTo2D(n),
            [("Scan", 9)] = (r, n) => throw r.Refuse(n, 9, "Scan-8's batch axis was removed at opset 9"),
            [("RoiAlign", 16)] = (r, n) =>
            {
                if (r.Attribute(n, "coordinate_transformation_mode") is null)
                {
                    r.SetAttribute(n, GraphSurgeryText("coordinate_transformation_mode", "output_half_pixel"));
                    r.Note("RoiAlign coordinate_transformation_mode");
                }
            },
            [("GridSample", 20)] = (r, n) =>
            {
                var mode = r.Text(n, "mode") ?? "bilinear";
                var renamed = mode switch { "bilinear" => "linear", "bicubic" => "cubic", _ => mode };
                r.SetAttribute(n, GraphSurgeryText("mode", renamed));
                r.Note("GridSample mode");
            },
            [("GroupNormalization", 21)] = (r, n) => r.GroupNormalization21(n),
            [("DFT", 20)] = (r, n) => throw r.Refuse(n, 20, "DFT's axis became an input at opset 20 with another default"),
        };
        foreach (var op in Reductions18)
        {
            a[(op, 18)] = (r, n) => r.AttributeToInput(n, "axes", 1, ElementType.Int64, required: false);
        }

        return a;
    }

    private static OnnxProto.AttributeProto GraphSurgeryText(string name, string value) =>
        new() { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    /// <summary>The state of one up-conversion: the main graph (where new constants go, visible in every subgraph), unique names, element types and ranks from an ONNX Runtime run of the original.</summary>
    private sealed class Rewrite
    {
        private readonly OnnxModel _model;
        private readonly long _source;
        private readonly long _target;
        private readonly HashSet<string> _names;
        private readonly Dictionary<string, (ElementType Type, int Rank)> _values;
        private readonly Dictionary<string, int> _consumers;
        private readonly SortedDictionary<string, int> _changes = new(StringComparer.Ordinal);
        private readonly Dictionary<string, long[]> _shapes = new(StringComparer.Ordinal);
        private List<OnnxProto.NodeProto> _before = [];
        private List<OnnxProto.NodeProto> _after = [];

        public Rewrite(OnnxModel model, long source, long target)
        {
            _model = model;
            _source = source;
            _target = target;
            _names = GraphSurgery.Names(model.Graph);
            foreach (var n in AllNodes(model.Graph))
            {
                _names.UnionWith(n.Output);
                if (n.Name.Length > 0)
                {
                    _names.Add(n.Name);
                }
            }

            _consumers = AllNodes(model.Graph).SelectMany(n => n.Input).Concat(model.Graph.Output.Select(o => o.Name))
                .GroupBy(x => x, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
            _values = Probe(model);
        }

        public IReadOnlyDictionary<string, int> Changes => _changes;

        public void Note(string change) => _changes[change] = _changes.GetValueOrDefault(change) + 1;

        public void ConvertGraph(OnnxProto.GraphProto graph)
        {
            var result = new List<OnnxProto.NodeProto>(graph.Node.Count);
            foreach (var node in graph.Node.ToList())
            {
                foreach (var a in node.Attribute)
                {
                    if (a.G is not null)
                    {
                        ConvertGraph(a.G);
                    }

                    foreach (var g in a.Graphs)
                    {
                        ConvertGraph(g);
                    }
                }

                _before = [];
                _after = [];
                if (IsDefaultDomain(node.Domain))
                {
                    Convert(node);
                }

                result.AddRange(_before);
                result.Add(node);
                result.AddRange(_after);
            }

            graph.Node.Clear();
            graph.Node.AddRange(result);
        }

        // Walks the node through each version of its operator after the source opset, up to the target.
        private void Convert(OnnxProto.NodeProto node)
        {
            if (node.OpType == "ImageScaler")
            {
                ImageScaler(node);
                return;
            }

            if (RemovedExperimental.Contains(node.OpType))
            {
                throw new BatchwiseException($"{GraphSurgery.Label(node)} is an experimental operator ONNX removed at opset 10; Batchwise cannot convert it", "Re-export the model with a current exporter.");
            }

            var at = _source;
            if (Deprecated.TryGetValue(node.OpType, out var deprecatedAt) && at >= deprecatedAt && _target > at)
            {
                // Deprecated where the model already is (Upsample at 10, Scatter at 11): replace it, then walk its replacement from there.
                Adapters[(node.OpType, deprecatedAt)](this, node);
                at = deprecatedAt;
            }

            while (true)
            {
                if (!OperatorVersions.SinceVersions.TryGetValue(node.OpType, out var versions))
                {
                    throw new BatchwiseException($"{GraphSurgery.Label(node)}: '{node.OpType}' is not an operator of the default ONNX domain", "Check the node's domain; custom operators need their own domain.");
                }

                if (at == _source && versions[0] > _source)
                {
                    throw new BatchwiseException($"{GraphSurgery.Label(node)}: '{node.OpType}' does not exist at opset {_source} (only from opset {versions[0]})", $"Fix the model's opset_import (it should be at least {versions[0]}).");
                }

                var next = versions.Where(v => v > at && v <= _target).DefaultIfEmpty(0).First();
                if (next == 0)
                {
                    return;
                }

                var op = node.OpType;
                if (Adapters.TryGetValue((op, next), out var adapter))
                {
                    adapter(this, node);
                }

                at = next;
            }
        }

        public BatchwiseException Refuse(OnnxProto.NodeProto node, int version, string why) =>
            new($"Cannot convert {GraphSurgery.Label(node)} to opset {_target}: {why}", $"Keep opset {_source} (ONNX Runtime runs it), or re-export the model at opset {Math.Max(version, _target)}.");

        public OnnxProto.AttributeProto? Attribute(OnnxProto.NodeProto node, string name) => GraphSurgery.Attribute(node, name);

        public long Int(OnnxProto.NodeProto node, string name, long fallback) => GraphSurgery.Int(node, name, fallback);

        public long[]? Ints(OnnxProto.NodeProto node, string name) => GraphSurgery.Ints(node, name);

        public string? Text(OnnxProto.NodeProto node, string name) => Attribute(node, name)?.S.ToStringUtf8();

        public void RemoveAttribute(OnnxProto.NodeProto node, string name)
        {
            if (Attribute(node, name) is { } a)
            {
                node.Attribute.Remove(a);
            }
        }

        public void SetAttribute(OnnxProto.NodeProto node, OnnxProto.AttributeProto value)
        {
            RemoveAttribute(node, value.Name);
            node.Attribute.Add(value);
        }

        public void SetInput(OnnxProto.NodeProto node, int index, string value)
        {
            while (node.Input.Count <= index)
            {
                node.Input.Add(string.Empty);
            }

            node.Input[index] = value;
        }

        /// <summary>A new initializer in the main graph (visible from every subgraph) named after the node.</summary>
        public string Constant(OnnxProto.NodeProto node, string what, OnnxProto.TensorProto value)
        {
            value.Name = GraphSurgery.Unique(_names, $"{Stem(node)}_{what}");
            _model.Graph.Initializer.Add(value);
            return value.Name;
        }

        public string Int64s(OnnxProto.NodeProto node, string what, long[] values) =>
            Constant(node, what, GraphSurgery.Int64Tensor(string.Empty, [values.Length], values));

        /// <summary>Moves an ints/floats attribute to input <paramref name="index"/> (as ONNX did for axes, split, scales).</summary>
        public void AttributeToInput(OnnxProto.NodeProto node, string name, int index, ElementType type, bool required)
        {
            var a = Attribute(node, name);
            if (a is null)
            {
                if (required)
                {
                    throw Refuse(node, 0, $"it has no '{name}' attribute");
                }

                return;
            }

            node.Attribute.Remove(a);
            var value = type == ElementType.Float
                ? GraphSurgery.FloatTensor(string.Empty, [a.Floats.Count], a.Floats.ToArray())
                : GraphSurgery.Int64Tensor(string.Empty, [a.Ints.Count], a.Ints.ToArray());
            SetInput(node, index, Constant(node, name, value));
            Note($"{node.OpType} {name}");
        }

        /// <summary>Removes outputs after the first <paramref name="keep"/> that nothing reads; refuses when one is read.</summary>
        public void DropUnusedOutputs(OnnxProto.NodeProto node, int keep, int version)
        {
            for (var i = node.Output.Count - 1; i >= keep; i--)
            {
                if (node.Output[i].Length > 0 && _consumers.ContainsKey(node.Output[i]))
                {
                    throw Refuse(node, version, $"its output {i} ('{node.Output[i]}') is read, and that output changed or was removed at opset {version} (a training output)");
                }

                node.Output.RemoveAt(i);
            }
        }

        public void Resize11(OnnxProto.NodeProto node)
        {
            // Resize-10 (and Upsample) scale from the top-left corner and take the floor for nearest: asymmetric, floor.
            var x = node.Input[0];
            var scales = node.Input.Count > 1 ? node.Input[1] : string.Empty;
            var roi = Constant(node, "roi", GraphSurgery.FloatTensor(string.Empty, [0], []));
            node.Input.Clear();
            node.Input.Add(x);
            node.Input.Add(roi);
            node.Input.Add(scales);
            SetAttribute(node, GraphSurgeryText("coordinate_transformation_mode", "asymmetric"));
            if ((Text(node, "mode") ?? "nearest") == "nearest")
            {
                SetAttribute(node, GraphSurgeryText("nearest_mode", "floor"));
            }

            Note("Resize roi and coordinates");
        }

        public void Clip11(OnnxProto.NodeProto node)
        {
            var min = Attribute(node, "min");
            var max = Attribute(node, "max");
            RemoveAttribute(node, "min");
            RemoveAttribute(node, "max");
            var type = TypeOf(node.Input[0]);
            if (min is not null)
            {
                SetInput(node, 1, Constant(node, "min", Scalar(type, min.F)));
            }

            if (max is not null)
            {
                SetInput(node, 2, Constant(node, "max", Scalar(type, max.F)));
            }

            Note("Clip min/max");
        }

        public void Pad11(OnnxProto.NodeProto node)
        {
            var pads = Ints(node, "pads") ?? throw Refuse(node, 11, "it has no pads attribute");
            var value = Attribute(node, "value");
            RemoveAttribute(node, "pads");
            RemoveAttribute(node, "value");
            SetInput(node, 1, Int64s(node, "pads", pads));
            if (value is not null && value.F != 0)
            {
                SetInput(node, 2, Constant(node, "value", Scalar(TypeOf(node.Input[0]), value.F)));
            }

            Note("Pad pads/value");
        }

        // Before opset 13 Softmax, LogSoftmax and Hardmax flatten the input to 2-D at `axis` (default 1) and normalise
        // each row; from 13 they work along one axis (default -1). The same where axis is the last one; elsewhere
        // Flatten -> op(axis=-1) -> Reshape back to the input's shape.
        public void CoerceTo2D(OnnxProto.NodeProto node)
        {
            var axis = Int(node, "axis", 1);
            var x = node.Input[0];
            var rank = _values.TryGetValue(x, out var v) ? v.Rank : -1;
            if (rank > 0 && (axis == rank - 1 || axis == -1))
            {
                SetAttribute(node, GraphSurgery.IntAttr("axis", axis));
                return;
            }

            var flat = GraphSurgery.Unique(_names, x + "_2d");
            _before.Add(GraphSurgery.Node("Flatten", GraphSurgery.Unique(_names, $"{Stem(node)}_Flatten"), [x], [flat], GraphSurgery.IntAttr("axis", axis)));
            var shape = GraphSurgery.Unique(_names, x + "_shape");
            _before.Add(GraphSurgery.Node("Shape", GraphSurgery.Unique(_names, $"{Stem(node)}_Shape"), [x], [shape]));
            var y = node.Output[0];
            var y2d = GraphSurgery.Unique(_names, y + "_2d");
            node.Input[0] = flat;
            node.Output[0] = y2d;
            SetAttribute(node, GraphSurgery.IntAttr("axis", -1));
            _after.Add(GraphSurgery.Node("Reshape", GraphSurgery.Unique(_names, $"{Stem(node)}_Reshape"), [y2d, shape], [y]));
            Note($"{node.OpType} axis (coerced to 2-D)");
        }

        public void GroupNormalization21(OnnxProto.NodeProto node)
        {
            // Opset 18 scales and shifts per group, 21 per channel: each group's value is repeated for its channels.
            var inits = GraphSurgery.Initializers(_model.Graph);
            var groups = Int(node, "num_groups", 0);
            if (node.Input.Count < 3 || !inits.TryGetValue(node.Input[1], out var scale) || !inits.TryGetValue(node.Input[2], out var bias)
                || !_values.TryGetValue(node.Input[0], out var x) || x.Rank < 2 || !_shapes.TryGetValue(node.Input[0], out var dims) || groups <= 0)
            {
                throw Refuse(node, 21, "its scale and bias changed from one per group to one per channel at opset 21, and they are not initializers of a known channel count");
            }

            var channels = dims[1];
            var s = scale.ToFloats();
            var b = bias.ToFloats();
            var perGroup = channels / groups;
            var sc = new float[channels];
            var bc = new float[channels];
            for (var c = 0; c < channels; c++)
            {
                sc[c] = s[c / perGroup];
                bc[c] = b[c / perGroup];
            }

            node.Input[1] = Constant(node, "scale", GraphSurgery.FloatTensor(string.Empty, [channels], sc));
            node.Input[2] = Constant(node, "bias", GraphSurgery.FloatTensor(string.Empty, [channels], bc));
            Note("GroupNormalization scale/bias per channel");
        }

        private void ImageScaler(OnnxProto.NodeProto node)
        {
            // y = scale * x + bias[c]: a Mul by a scalar and an Add of a [1, C, 1, 1] bias.
            var scale = GraphSurgery.Float(node, "scale", 1f);
            var bias = Attribute(node, "bias")?.Floats.ToArray() ?? [];
            var x = node.Input[0];
            var scaled = GraphSurgery.Unique(_names, x + "_scaled");
            _before.Add(GraphSurgery.Node("Mul", GraphSurgery.Unique(_names, $"{Stem(node)}_Mul"), [x, Constant(node, "scale", GraphSurgery.FloatTensor(string.Empty, [], [scale]))], [scaled]));
            node.OpType = "Add";
            node.Attribute.Clear();
            node.Input.Clear();
            node.Input.Add(scaled);
            node.Input.Add(Constant(node, "bias", GraphSurgery.FloatTensor(string.Empty, [1, bias.Length, 1, 1], bias)));
            Note("ImageScaler -> Mul + Add");
        }

        private ElementType TypeOf(string value) => _values.TryGetValue(value, out var v) ? v.Type : ElementType.Float;

        private static OnnxProto.TensorProto Scalar(ElementType type, float value) => type switch
        {
            ElementType.Float16 => GraphSurgery.HalfTensor(string.Empty, [], [value]),
            ElementType.Double => GraphSurgery.RawTensor<double>(string.Empty, ElementType.Double, [], [value]),
            _ => GraphSurgery.FloatTensor(string.Empty, [], [value]),
        };

        private static string Stem(OnnxProto.NodeProto node) => node.Name.Length > 0 ? node.Name : node.Output.FirstOrDefault() ?? node.OpType;

        // Element types and ranks of the main graph's values from one ONNX Runtime run of the original (seeded inputs,
        // dynamic axes at the default size); empty when it does not run (the adapters then assume float and take the
        // shape-agnostic rewrite).
        private Dictionary<string, (ElementType, int)> Probe(OnnxModel model)
        {
            var result = new Dictionary<string, (ElementType, int)>(StringComparer.Ordinal);
            try
            {
                foreach (var (name, t) in ModelProbe.Run(model, SeededInputs.Create(model, 1)))
                {
                    result[name] = (t.ElementType, t.Shape.Length);
                    _shapes[name] = t.Shape;
                }
            }
            catch (BatchwiseException)
            {
                // Not runnable here (e.g. an input that needs real data); the adapters work without ranks.
            }

            foreach (var t in model.Graph.Initializer)
            {
                result[t.Name] = ((ElementType)t.DataType, t.Dims.Count);
                _shapes[t.Name] = [.. t.Dims];
            }

            return result;
        }
    }
}
