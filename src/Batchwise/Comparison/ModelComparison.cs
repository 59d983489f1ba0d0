using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Comparison;

/// <summary>One side of a comparison: a model on an engine.</summary>
/// <param name="Engine">The engine that runs it.</param>
/// <param name="Model">The model.</param>
/// <param name="Options">Engine options.</param>
public sealed record ComparisonSide(IEngine Engine, OnnxModel Model, EngineOptions Options)
{
    /// <summary>"model on engine", for reports.</summary>
    public string Label => $"{Model.Name} on {Engine.Name}";
}

/// <summary>The outcome of running the same inputs through a reference and a candidate.</summary>
/// <param name="Reference">What the reference ran on.</param>
/// <param name="Candidate">What the candidate ran on.</param>
/// <param name="Inputs">The inputs as given to the reference (name, type, shape).</param>
/// <param name="Outputs">One comparison per output (outputs matched by name, else by position).</param>
/// <param name="Notes">Anything the reader should know (outputs matched by position, inputs cast to another type).</param>
public sealed record ModelComparisonResult(
    EngineDescription Reference,
    EngineDescription Candidate,
    IReadOnlyList<string> Inputs,
    IReadOnlyList<TensorComparison> Outputs,
    IReadOnlyList<string> Notes)
{
    /// <summary>True when every output is within tolerance.</summary>
    public bool Passed => Outputs.All(o => o.Passed);
}

/// <summary>Runs the same inputs through two (engine, model) pairs and compares every output.</summary>
public static class ModelComparison
{
    /// <summary>
    /// Runs <paramref name="inputs"/> (in the reference model's input order) through both sides and compares the outputs:
    /// within <paramref name="tolerance"/> element by element, or, given <paramref name="agreement"/> (an int8 candidate),
    /// by cosine and top-1 agreement.
    /// </summary>
    public static ModelComparisonResult Run(ComparisonSide reference, ComparisonSide candidate, IReadOnlyList<Tensor> inputs, Tolerance tolerance, CancellationToken cancellationToken = default, Agreement? agreement = null)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(candidate);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(tolerance);
        var notes = new List<string>();
        var referenceInputs = reference.Model.Inputs;
        var candidateInputs = MapInputs(referenceInputs, candidate.Model.Inputs, inputs, candidate.Model.Name, notes);

        var referenceOutputs = RunSide(reference, inputs, cancellationToken);
        var candidateOutputs = RunSide(candidate, candidateInputs, cancellationToken);

        var refSpecs = reference.Model.Outputs;
        var candSpecs = candidate.Model.Outputs;
        var candByName = candSpecs.Select((s, i) => (s.Name, i)).ToDictionary(x => x.Name, x => x.i, StringComparer.Ordinal);
        var byPosition = refSpecs.All(s => !candByName.ContainsKey(s.Name)) && refSpecs.Count == candSpecs.Count;
        if (byPosition && refSpecs.Count > 0)
        {
            notes.Add($"no output names in common; outputs matched by position ({string.Join(", ", refSpecs.Zip(candSpecs, (r, c) => $"{r.Name}={c.Name}"))})");
        }

        var comparisons = new List<TensorComparison>();
        for (var i = 0; i < refSpecs.Count; i++)
        {
            var j = byPosition ? i : candByName.GetValueOrDefault(refSpecs[i].Name, -1);
            if (j < 0)
            {
                comparisons.Add(new TensorComparison
                {
                    Name = refSpecs[i].Name,
                    Reference = referenceOutputs[i].ToString(),
                    Candidate = "missing",
                    Tolerance = tolerance,
                    Problem = $"'{candidate.Model.Name}' has no output named '{refSpecs[i].Name}'",
                });
                continue;
            }

            var comparison = TensorComparison.Compare(refSpecs[i].Name, candidateOutputs[j], referenceOutputs[i], tolerance);
            comparisons.Add(agreement is null ? comparison : comparison.JudgedBy(agreement, candidateOutputs[j], referenceOutputs[i]));
            if (referenceOutputs[i].ElementType.IsFloatingPoint() && Transforms.Verification.Dead(referenceOutputs[i]) is { } dead)
            {
                notes.Add($"output '{refSpecs[i].Name}' is {dead} in the reference on these inputs: agreement on it proves nothing (give real inputs with --inputs DIR, or check the model's weights)");
            }
        }

        if (agreement is not null)
        {
            notes.Add($"int8 candidate: judged by {agreement.Describe()} per output, not element by element (give --rtol or --atol to judge element by element)");
        }

        if (!byPosition)
        {
            var extra = candSpecs.Select(s => s.Name).Except(refSpecs.Select(s => s.Name), StringComparer.Ordinal).ToList();
            if (extra.Count > 0)
            {
                notes.Add($"outputs only the candidate has, not compared: {string.Join(", ", extra)}");
            }
        }

        return new ModelComparisonResult(
            reference.Engine.Describe(reference.Options),
            candidate.Engine.Describe(candidate.Options),
            referenceInputs.Select((s, i) => $"{s.Name}: {inputs[i]}").ToList(),
            comparisons,
            notes);
    }

    /// <summary>
    /// Refuses a batch size a fixed-batch model cannot run, instead of running the batch fixed in the file and reporting
    /// it as if it were the one asked for.
    /// </summary>
    public static void RequireBatch(OnnxModel model, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(model);
        var axis = model.FindBatchAxis();
        var fixedBatch = model.Inputs.FirstOrDefault()?.Shape.FirstOrDefault().Value;
        if (axis.IsBatchable || fixedBatch is null || fixedBatch == batchSize)
        {
            return;
        }

        throw new BatchwiseException(
            $"-b {batchSize}: '{model.Name}' runs only batch {fixedBatch} ({axis.Reason})",
            $"Leave -b out (it then runs batch {fixedBatch}), or make the batch dynamic first: batchwise optimize {model.Path ?? model.Name} --dynamic-batch -o OUT.onnx.");
    }

    /// <summary>Converts a tensor's values to another element type (to feed the same data to an fp16 and an fp32 variant).</summary>
    public static Tensor CastTo(Tensor tensor, ElementType target)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.ElementType == target)
        {
            return tensor;
        }

        var values = tensor.ToDoubles();
        var result = Tensor.Zeros(target, (long[])tensor.Shape.Clone());
        for (var i = 0; i < values.Length; i++)
        {
            var v = values[i];
            switch (target)
            {
                case ElementType.Float: result.AsSpan<float>()[i] = (float)v; break;
                case ElementType.Float16: result.AsSpan<Half>()[i] = (Half)v; break;
                case ElementType.BFloat16: result.AsSpan<ushort>()[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)v) >> 16); break;
                case ElementType.Double: result.AsSpan<double>()[i] = v; break;
                case ElementType.Int64: result.AsSpan<long>()[i] = (long)v; break;
                case ElementType.Int32: result.AsSpan<int>()[i] = (int)v; break;
                case ElementType.Int16: result.AsSpan<short>()[i] = (short)v; break;
                case ElementType.UInt16: result.AsSpan<ushort>()[i] = (ushort)v; break;
                case ElementType.UInt32: result.AsSpan<uint>()[i] = (uint)v; break;
                case ElementType.UInt64: result.AsSpan<ulong>()[i] = (ulong)v; break;
                case ElementType.Int8: result.AsSpan<sbyte>()[i] = (sbyte)v; break;
                case ElementType.UInt8: result.Data[i] = (byte)v; break;
                case ElementType.Bool: result.Data[i] = v != 0 ? (byte)1 : (byte)0; break;
                default: throw new BatchwiseException($"Cannot convert values to {target}", "Use numeric model inputs.");
            }
        }

        return result;
    }

    private static List<Tensor> MapInputs(IReadOnlyList<TensorSpec> referenceSpecs, IReadOnlyList<TensorSpec> candidateSpecs, IReadOnlyList<Tensor> inputs, string candidateName, List<string> notes)
    {
        if (inputs.Count != referenceSpecs.Count)
        {
            throw new BatchwiseException($"{inputs.Count} input tensors for {referenceSpecs.Count} model inputs", "Pass one tensor per input.");
        }

        var byName = referenceSpecs.Select((s, i) => (s.Name, i)).ToDictionary(x => x.Name, x => x.i, StringComparer.Ordinal);
        var positional = candidateSpecs.Count == referenceSpecs.Count && candidateSpecs.All(s => !byName.ContainsKey(s.Name));
        var result = new List<Tensor>(candidateSpecs.Count);
        for (var i = 0; i < candidateSpecs.Count; i++)
        {
            var spec = candidateSpecs[i];
            var source = positional ? i : byName.GetValueOrDefault(spec.Name, -1);
            if (source < 0)
            {
                throw new BatchwiseException(
                    $"'{candidateName}' takes input '{spec.Name}', which the reference model does not have (it takes {string.Join(", ", referenceSpecs.Select(s => s.Name))})",
                    "Compare variants of one model: the same input names, or the same number of inputs in the same order.");
            }

            var tensor = inputs[source];
            if (spec.ElementType != tensor.ElementType && spec.ElementType is not (ElementType.Undefined or ElementType.String))
            {
                notes.Add($"input '{spec.Name}' cast from {tensor.ElementType.ShortName()} to {spec.ElementType.ShortName()} for '{candidateName}'");
                tensor = CastTo(tensor, spec.ElementType);
            }

            result.Add(tensor);
        }

        if (positional && candidateSpecs.Count > 0)
        {
            notes.Add("no input names in common; inputs matched by position");
        }

        return result;
    }

    private static IReadOnlyList<Tensor> RunSide(ComparisonSide side, IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken)
    {
        using var session = side.Engine.Load(side.Model, side.Options);
        var outputs = session.Run(inputs, cancellationToken);
        if (outputs.Count != side.Model.Outputs.Count)
        {
            throw new BatchwiseException($"{side.Label} returned {outputs.Count} outputs; the model declares {side.Model.Outputs.Count}", "This is an engine bug; report it with the model.");
        }

        return outputs;
    }
}
