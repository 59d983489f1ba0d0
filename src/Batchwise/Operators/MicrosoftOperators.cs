using Batchwise.Analysis;
using Batchwise.Onnx;
using static Batchwise.Operators.OperatorRegistry;

namespace Batchwise.Operators;

/// <summary>
/// ONNX Runtime's com.microsoft operators that real exports carry (its transformer and graph optimizers write them):
/// the GELU forms, FusedConv, FusedMatMul, SkipLayerNormalization, Attention, MultiHeadAttention,
/// EmbedLayerNormalization and the quantized pointwise QLinear* operators. Each is named, shape-inferred and costed;
/// the host implementations cover the forms without masks, past state or packed inputs and refuse the others naming
/// what they lack.
/// </summary>
internal static class MicrosoftOperators
{
    private const double Sqrt2OverPi = 0.7978845608028654;

    public static IEnumerable<OperatorSchema> Records()
    {
        yield return Pointwise("Gelu", 8, _ => a => Gelu(a[0]));
        yield return Pointwise("BiasGelu", 9, _ => a => Gelu(a[0] + a[1]));
        yield return Pointwise("FastGelu", 10, _ => a => FastGelu(a[0] + (a.Length > 1 ? a[1] : 0)));
        yield return Pointwise("QuickGelu", 5, c => { var alpha = c.Float("alpha"); return a => a[0] / (1 + Math.Exp(-alpha * a[0])); })
            .WithAttributes(Attribute.Float("alpha", 1.702f));

        yield return Define(OperatorRegistry.Microsoft, "FusedConv", [1])
            .WithAttributes([.. ConvolutionOperators.ConvAttributes, Attribute.String("activation"), Attribute.Floats("activation_params")])
            .Shape(c => [ConvolutionOperators.ConvShape(c)])
            .Host(c =>
            {
                var y = ConvolutionOperators.Conv(c, c.In(0), c.In(1), c.Optional(2), c.In(0).Type);
                var sum = c.Optional(3);
                var activation = FusedActivation(c);
                return [HostTensor.Create(y.Type, y.Shape, i => activation(y[i] + (sum is null ? 0 : sum[i])))];
            }, eager: false)
            .Costs(OpCategory.Gemm, c =>
            {
                var work = ConvolutionOperators.ConvCost(c);
                return work with { Flops = work.Flops + (2 * c.OutputElements) };
            });

        yield return Define(OperatorRegistry.Microsoft, "FusedMatMul", [1])
            .WithAttributes(Attribute.Float("alpha", 1.0f), Attribute.Int("transA", 0), Attribute.Int("transB", 0), Attribute.Int("transBatchA", 0), Attribute.Int("transBatchB", 0))
            .Shape(c =>
            {
                RefuseBatchTranspose(c.Int("transBatchA"), c.Int("transBatchB"), c.Fail);
                var (a, b) = (c.In(0), c.In(1));
                var left = c.Int("transA") != 0 && a.Shape.Length >= 2 ? a with { Shape = SwapLast(a.Shape) } : a;
                var right = c.Int("transB") != 0 && b.Shape.Length >= 2 ? b with { Shape = SwapLast(b.Shape) } : b;
                return [MatrixOperators.MatMulShape(c, left.ShapeOnly, right.ShapeOnly, a.Type)];
            })
            .Host(c =>
            {
                RefuseBatchTranspose(c.Int("transBatchA"), c.Int("transBatchB"), c.Fail);
                var (a, b) = (c.In(0), c.In(1));
                a = c.Int("transA") != 0 && a.Shape.Length >= 2 ? SwapLast(a) : a;
                b = c.Int("transB") != 0 && b.Shape.Length >= 2 ? SwapLast(b) : b;
                var alpha = c.Float("alpha");
                var product = MatrixOperators.MatMul(a, b, c.OutputShape(0), ElementType.Double);
                return [HostTensor.Create(c.OutputType(0), product.Shape, i => alpha * product[i])];
            }, eager: false)
            .Costs(OpCategory.Gemm, c =>
            {
                var a = c.InputShape(0);
                var b = c.InputShape(1);
                var y = c.OutputShape(0);
                var k = a.Length >= 2 && c.Attributes.Int("transA", 0) != 0 ? a[^2] : a[^1];
                var n = b.Length == 1 ? 1 : c.Attributes.Int("transB", 0) != 0 ? b[^2] : b[^1];
                var m = CostContext.Count(y) / n;
                var gemm = b.Length <= 2 ? new GemmShape(M: m, N: n, K: k) : new GemmShape(M: y[^2], N: n, K: k, BatchCount: m / y[^2]);
                return new OperatorWork(2 * gemm.Macs, gemm);
            });

        yield return Define(OperatorRegistry.Microsoft, "SkipLayerNormalization", [1])
            .WithAttributes(Attribute.Float("epsilon", 1e-12f))
            .Shape(c =>
            {
                var x = c.In(0);
                var stats = new SymbolicValue(ElementType.Float, [.. x.Shape.SkipLast(1), DimExpr.Of(1)]);
                return [x.ShapeOnly, stats, stats, x.ShapeOnly];
            })
            .Host(c =>
            {
                var (x, skip, gamma, beta, bias) = (c.In(0), c.In(1), c.In(2), c.Optional(3), c.Optional(4));
                var hidden = x.Shape[^1];
                var skipStrides = TensorMath.BroadcastStrides(skip.Shape, x.Shape);
                var position = new long[x.Shape.Length];
                var sum = HostTensor.Create(x.Type, x.Shape, i =>
                {
                    ConvolutionOperators.Unravel(i, x.Shape, position);
                    return x[i] + skip[Offset(position, skipStrides)] + (bias is null ? 0 : bias[i % hidden]);
                });
                var (y, means, inverse) = LayerNorm(sum, hidden, c.Float("epsilon"), gamma, beta);
                return [y, Stats(means, c.OutputShape(1)), Stats(inverse, c.OutputShape(2)), sum];
            }, eager: false)
            .Costs(OpCategory.Normalization, c => new OperatorWork(10 * c.OutputElements));

        yield return Define(OperatorRegistry.Microsoft, "EmbedLayerNormalization", [1])
            .WithAttributes(Attribute.Float("epsilon", 1e-12f), Attribute.Int("mask_index_type", 1))
            .Shape(c =>
            {
                var (ids, words) = (c.In(0), c.In(2));
                if (ids.Shape.Length != 2 || words.Shape.Length != 2)
                {
                    throw c.Fail($"input_ids must be [batch, sequence] and word_embedding [vocabulary, hidden], got ranks {ids.Shape.Length} and {words.Shape.Length}");
                }

                DimExpr[] output = [ids.Shape[0], ids.Shape[1], words.Shape[1]];
                return [new SymbolicValue(words.Type, output), new SymbolicValue(ElementType.Int32, [ids.Shape[0]]), new SymbolicValue(words.Type, output)];
            })
            .Host(c =>
            {
                var (ids, segments, words, positions, segmentTable, gamma, beta) = (c.In(0), c.Optional(1), c.In(2), c.In(3), c.Optional(4), c.In(5), c.In(6));
                var (mask, positionIds) = (c.Optional(7), c.Optional(8));
                var (batch, sequence, hidden) = (ids.Shape[0], ids.Shape[1], words.Shape[1]);
                var sum = HostTensor.Create(words.Type, [batch, sequence, hidden], i =>
                {
                    var (token, h) = (i / hidden, i % hidden);
                    var p = positionIds is null ? token % sequence : positionIds.Int(positionIds.Count == sequence ? token % sequence : token);
                    var value = words[(Row(c, ids.Int(token), words.Shape[0], "input_ids") * hidden) + h] + positions[(Row(c, (long)p, positions.Shape[0], "position ids") * hidden) + h];
                    return segments is null || segmentTable is null ? value : value + segmentTable[(Row(c, segments.Int(token), segmentTable.Shape[0], "segment_ids") * hidden) + h];
                });
                var (y, _, _) = LayerNorm(sum, hidden, c.Float("epsilon"), gamma, beta);
                var maskIndex = HostTensor.CreateInts(ElementType.Int32, [batch], b =>
                {
                    long count = 0;
                    for (long s = 0; mask is not null && s < sequence; s++)
                    {
                        count += mask.Int((b * sequence) + s) == 1 ? 1 : 0;
                    }

                    return count;
                });
                return [y, maskIndex, sum];
            }, eager: false)
            .Costs(OpCategory.Normalization, c => new OperatorWork(12 * c.OutputElements));

        yield return Define(OperatorRegistry.Microsoft, "Attention", [1])
            .WithAttributes(
                Attribute.Int("num_heads", required: true),
                Attribute.Int("unidirectional", 0),
                Attribute.Ints("qkv_hidden_sizes"),
                Attribute.Float("mask_filter_value", -10000f),
                Attribute.Float("scale", 0f),
                Attribute.Int("do_rotary", 0),
                Attribute.Int("rotary_embedding_dim", 0),
                Attribute.Int("past_present_share_buffer", 0))
            .Shape(c =>
            {
                var (x, w) = (c.In(0), c.In(1));
                if (x.Shape.Length != 3 || w.Shape.Length != 2)
                {
                    throw c.Fail($"input must be [batch, sequence, hidden] and weights 2-D, got ranks {x.Shape.Length} and {w.Shape.Length}");
                }

                var (_, k, v) = AttentionSizes(c.Ints("qkv_hidden_sizes"), w.Shape[1], c.Fail);
                var heads = c.Int("num_heads");
                var past = c.Has(4) ? c.In(4).Shape[3] : DimExpr.Of(0);
                return
                [
                    new SymbolicValue(x.Type, [x.Shape[0], x.Shape[1], v]),
                    new SymbolicValue(x.Type, [DimExpr.Of(2), x.Shape[0], DimExpr.Of(heads), past + x.Shape[1], k.DivideBy(DimExpr.Of(heads))]),
                ];
            })
            .Host(c =>
            {
                RefuseInputs(c, (3, "mask_index"), (4, "past"), (5, "attention_bias"), (6, "past_sequence_length"));
                if (c.Int("do_rotary") != 0)
                {
                    throw c.Fail("rotary embeddings are not evaluated on the host");
                }

                var (x, w, bias) = (c.In(0), c.In(1), c.Optional(2));
                var (q, k, v) = AttentionSizes(c.Ints("qkv_hidden_sizes"), DimExpr.Of(w.Shape[1]), c.Fail);
                var projected = MatrixOperators.MatMul(x, w, [x.Shape[0], x.Shape[1], w.Shape[1]], ElementType.Double);
                var (batch, sequence, width) = (x.Shape[0], x.Shape[1], w.Shape[1]);
                double Projection(long b, long s, long column) => projected[(((b * sequence) + s) * width) + column] + (bias is null ? 0 : bias[column]);
                var (qs, ks) = (q.Value, k.Value);
                var output = Attend(c, batch, sequence, sequence, c.Int("num_heads"), qs, v.Value, c.Int("unidirectional") != 0, (b, s, j) => Projection(b, s, j), (b, s, j) => Projection(b, s, qs + j), (b, s, j) => Projection(b, s, qs + ks + j));
                var heads = c.Int("num_heads");
                var present = HostTensor.Create(x.Type, c.OutputShape(1), i =>
                {
                    var headSize = ks / heads;
                    var (rest, j) = (i / headSize, i % headSize);
                    var (rest2, s) = (rest / sequence, rest % sequence);
                    var (rest3, h) = (rest2 / heads, rest2 % heads);
                    var (which, b) = (rest3 / batch, rest3 % batch);
                    return Projection(b, s, qs + (which * ks) + (h * headSize) + j);
                });
                return [HostTensor.Create(x.Type, c.OutputShape(0), i => output[i]), present];
            }, eager: false)
            .Costs(OpCategory.Gemm, c =>
            {
                var (x, w) = (c.InputShape(0), c.InputShape(1));
                var (batch, sequence) = (x[0], x[1]);
                var (q, k, v) = AttentionSizes(c.Attributes.Ints("qkv_hidden_sizes"), DimExpr.Of(w[1]), m => new BatchwiseException(m, "Check the model."));
                var projection = new GemmShape(M: batch * sequence, N: w[1], K: w[0]);
                var attention = 2 * batch * sequence * sequence * (k.Value + v.Value);
                return new OperatorWork((2 * projection.Macs) + attention + (5 * batch * sequence * sequence * c.Attributes.Int("num_heads", 1)), projection);
            });

        yield return Define(OperatorRegistry.Microsoft, "MultiHeadAttention", [1])
            .WithAttributes(
                Attribute.Int("num_heads", required: true),
                Attribute.Int("unidirectional", 0),
                Attribute.Float("mask_filter_value", -10000f),
                Attribute.Float("scale", 0f))
            .Shape(c =>
            {
                var q = c.In(0);
                if (q.Shape.Length != 3 || !c.Has(1) || !c.Has(2) || c.In(1).Shape.Length != 3 || c.In(2).Shape.Length != 3)
                {
                    throw c.Fail("only separate 3-D query, key and value ([batch, sequence, hidden]) are inferred; packed or per-head inputs are not");
                }

                var (k, v) = (c.In(1), c.In(2));
                var heads = DimExpr.Of(c.Int("num_heads"));
                return
                [
                    new SymbolicValue(q.Type, [q.Shape[0], q.Shape[1], v.Shape[2]]),
                    new SymbolicValue(q.Type, [q.Shape[0], heads, k.Shape[1], k.Shape[2].DivideBy(heads)]),
                    new SymbolicValue(q.Type, [q.Shape[0], heads, v.Shape[1], v.Shape[2].DivideBy(heads)]),
                ];
            })
            .Host(c =>
            {
                RefuseInputs(c, (4, "key_padding_mask"), (5, "attention_bias"), (6, "past_key"), (7, "past_value"));
                var (q, k, v, bias) = (c.In(0), c.In(1), c.In(2), c.Optional(3));
                var (batch, sequence, length) = (q.Shape[0], q.Shape[1], k.Shape[1]);
                var (qw, kw, vw) = (q.Shape[2], k.Shape[2], v.Shape[2]);
                double B(long j) => bias is null ? 0 : bias[j];
                var output = Attend(c, batch, sequence, length, c.Int("num_heads"), qw, vw, c.Int("unidirectional") != 0, (b, s, j) => q[(((b * sequence) + s) * qw) + j] + B(j), (b, s, j) => k[(((b * length) + s) * kw) + j] + B(qw + j), (b, s, j) => v[(((b * length) + s) * vw) + j] + B(qw + kw + j));
                var heads = c.Int("num_heads");
                HostTensor Present(HostTensor t, long width, long offset) => HostTensor.Create(q.Type, [batch, heads, length, width / heads], i =>
                {
                    var headSize = width / heads;
                    var (rest, j) = (i / headSize, i % headSize);
                    var (rest2, s) = (rest / length, rest % length);
                    var (b, h) = (rest2 / heads, rest2 % heads);
                    return t[(((b * length) + s) * width) + (h * headSize) + j] + B(offset + (h * headSize) + j);
                });
                return [HostTensor.Create(q.Type, c.OutputShape(0), i => output[i]), Present(k, kw, qw), Present(v, vw, qw + kw)];
            }, eager: false)
            .Costs(OpCategory.Gemm, c =>
            {
                var (q, k, v) = (c.InputShape(0), c.InputShape(1), c.InputShape(2));
                var heads = c.Attributes.Int("num_heads", 1);
                var scores = new GemmShape(M: q[1], N: k[1], K: q[2] / heads, BatchCount: q[0] * heads);
                return new OperatorWork((2 * scores.Macs) + (2 * q[0] * q[1] * k[1] * v[2]) + (5 * q[0] * heads * q[1] * k[1]), scores);
            });

        // Quantized pointwise operators: y = quantize(f(dequantize(x))) with scales and zero points as inputs.
        yield return QLinear("QLinearAdd", 2, (a, b) => a + b);
        yield return QLinear("QLinearMul", 2, (a, b) => a * b, multiply: true);
        yield return QLinear("QLinearSigmoid", 1, (a, _) => 1 / (1 + MathF.Exp(-a)));
        yield return QLinear("QLinearLeakyRelu", 1, (a, _) => a, leaky: true).WithAttributes(Attribute.Float("alpha", 0.01f));
    }

    private static double Gelu(double x) => 0.5 * x * (1 + ElementwiseOperators.Erf(x / Math.Sqrt(2)));

    private static double FastGelu(double x) => 0.5 * x * (1 + Math.Tanh(Sqrt2OverPi * (x + (0.044715 * x * x * x))));

    /// <summary>A com.microsoft pointwise operator over its (broadcast) inputs.</summary>
    private static OperatorSchema Pointwise(string name, int flops, Func<EvaluationContext, Func<double[], double>> f) => Define(OperatorRegistry.Microsoft, name, [1])
        .Shape(c => [new SymbolicValue(c.In(0).Type, c.Broadcast([.. c.Present().Select(v => v.Shape)]))])
        .Host(c =>
        {
            var inputs = c.Present();
            var shape = c.OutputShape(0);
            var strides = inputs.Select(t => TensorMath.BroadcastStrides(t.Shape, shape)).ToArray();
            var position = new long[shape.Length];
            var args = new double[inputs.Length];
            var function = f(c);
            return [HostTensor.Create(c.OutputType(0), shape, i =>
            {
                ConvolutionOperators.Unravel(i, shape, position);
                for (var k = 0; k < inputs.Length; k++)
                {
                    args[k] = inputs[k][Offset(position, strides[k])];
                }

                return function(args);
            })];
        })
        .Costs(OpCategory.Elementwise, c => new OperatorWork(flops * c.OutputElements));

    /// <summary>
    /// QLinearAdd, QLinearMul (inputs A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point) and the
    /// unary QLinearSigmoid, QLinearLeakyRelu (X, X_scale, X_zero_point, Y_scale, Y_zero_point), in float32 as ONNX
    /// Runtime computes them (scale ratios first, round half to even, saturate), so that results match it to the unit.
    /// </summary>
    private static OperatorSchema QLinear(string name, int operands, Func<float, float, float> f, bool leaky = false, bool multiply = false) => Define(OperatorRegistry.Microsoft, name, [1])
        .Shape(c => [new SymbolicValue(c.In(0).Type, operands == 2 ? c.Broadcast(c.In(0).Shape, c.In(3).Shape) : c.In(0).Shape)])
        .Host(c =>
        {
            float Scale(int i) => (float)c.In(i)[0];
            float Zero(int i) => (float)(c.Optional(i)?[0] ?? 0);
            var a = c.In(0);
            var b = operands == 2 ? c.In(3) : null;
            var (outScale, outZero) = operands == 2 ? (Scale(6), Zero(7)) : (Scale(3), Zero(4));
            var shape = c.OutputShape(0);
            var aStrides = TensorMath.BroadcastStrides(a.Shape, shape);
            var bStrides = b is null ? null : TensorMath.BroadcastStrides(b.Shape, shape);
            var position = new long[shape.Length];
            var alpha = leaky ? (float)c.Float("alpha") : 0f;
            var (low, high) = a.Type == ElementType.Int8 ? (-128f, 127f) : (0f, 255f);
            var (ratioA, ratioB) = (Scale(1) / outScale, operands == 2 ? Scale(4) / outScale : 0f);
            var ratioProduct = operands == 2 ? Scale(1) * Scale(4) / outScale : 0f;
            return [HostTensor.Create(a.Type, shape, i =>
            {
                ConvolutionOperators.Unravel(i, shape, position);
                var x = (float)a[Offset(position, aStrides)] - Zero(2);
                float scaled;
                if (b is null)
                {
                    var y = f(x * Scale(1), 0);
                    scaled = (leaky && y < 0 ? y * alpha : y) / outScale;
                }
                else
                {
                    var z = (float)b[Offset(position, bStrides!)] - Zero(5);
                    if (multiply)
                    {
                        // ONNX Runtime's SSE2 kernel adds the zero point before rounding.
                        return Math.Clamp(MathF.Round((x * z * ratioProduct) + outZero, MidpointRounding.ToEven), low, high);
                    }

                    scaled = (ratioA * x) + (ratioB * z);
                }

                return Math.Clamp(MathF.Round(scaled, MidpointRounding.ToEven) + outZero, low, high);
            })];
        }, eager: false)
        .Costs(OpCategory.Elementwise, c => new OperatorWork(6 * c.OutputElements));

    private static Func<double, double> FusedActivation(EvaluationContext c)
    {
        var p = c.Attributes.Floats("activation_params") ?? [];
        double P(int i, double fallback) => i < p.Length ? p[i] : fallback;
        return c.Attributes.String("activation", string.Empty) switch
        {
            "" => x => x,
            "Relu" => x => Math.Max(0, x),
            "Tanh" => Math.Tanh,
            "Sigmoid" => x => 1 / (1 + Math.Exp(-x)),
            "LeakyRelu" => x => x >= 0 ? x : P(0, 0.01) * x,
            "Clip" => x => Math.Clamp(x, P(0, double.MinValue), P(1, double.MaxValue)),
            "HardSigmoid" => x => Math.Clamp((P(0, 0.2) * x) + P(1, 0.5), 0, 1),
            var other => throw c.Fail($"activation '{other}' is not one FusedConv takes"),
        };
    }

    private static void RefuseBatchTranspose(long a, long b, Func<string, Exception> fail)
    {
        if (a != 0 || b != 0)
        {
            throw fail("transBatchA and transBatchB are not supported (Batchwise infers FusedMatMul with transA and transB only)");
        }
    }

    private static void RefuseInputs(EvaluationContext c, params (int Position, string Name)[] inputs)
    {
        foreach (var (position, name) in inputs.Where(i => c.Has(i.Position)))
        {
            throw c.Fail($"its input {name} is not evaluated on the host (only the unmasked form without past state is)");
        }
    }

    private static (DimExpr Q, DimExpr K, DimExpr V) AttentionSizes(long[]? qkv, DimExpr width, Func<string, Exception> fail) =>
        qkv is { Length: 3 } ? (DimExpr.Of(qkv[0]), DimExpr.Of(qkv[1]), DimExpr.Of(qkv[2]))
        : qkv is { Length: > 0 } ? throw fail($"qkv_hidden_sizes has {qkv.Length} values, not 3")
        : width.IsConcrete ? (DimExpr.Of(width.Value / 3), DimExpr.Of(width.Value / 3), DimExpr.Of(width.Value / 3))
        : (width.DivideBy(DimExpr.Of(3)), width.DivideBy(DimExpr.Of(3)), width.DivideBy(DimExpr.Of(3)));

    /// <summary>Scaled dot-product attention per head: softmax(Q K^T x scale [+ causal mask]) V, heads side by side in the output's last dimension.</summary>
    private static double[] Attend(EvaluationContext c, long batch, long sequence, long length, long heads, long qWidth, long vWidth, bool causal, Func<long, long, long, double> q, Func<long, long, long, double> k, Func<long, long, long, double> v)
    {
        var (qHead, vHead) = (qWidth / heads, vWidth / heads);
        var scale = c.Float("scale") is var s && s != 0 ? s : 1 / Math.Sqrt(qHead);
        var output = new double[batch * sequence * vWidth];
        var scores = new double[length];
        for (long b = 0; b < batch; b++)
        {
            for (long h = 0; h < heads; h++)
            {
                for (long i = 0; i < sequence; i++)
                {
                    var max = double.NegativeInfinity;
                    for (long j = 0; j < length; j++)
                    {
                        double dot = 0;
                        for (long d = 0; d < qHead; d++)
                        {
                            dot += q(b, i, (h * qHead) + d) * k(b, j, (h * qHead) + d);
                        }

                        scores[j] = (dot * scale) + (causal && j > i + (length - sequence) ? c.Float("mask_filter_value") : 0);
                        max = Math.Max(max, scores[j]);
                    }

                    double total = 0;
                    for (long j = 0; j < length; j++)
                    {
                        scores[j] = Math.Exp(scores[j] - max);
                        total += scores[j];
                    }

                    for (long d = 0; d < vHead; d++)
                    {
                        double sum = 0;
                        for (long j = 0; j < length; j++)
                        {
                            sum += scores[j] / total * v(b, j, (h * vHead) + d);
                        }

                        output[(((b * sequence) + i) * vWidth) + (h * vHead) + d] = sum;
                    }
                }
            }
        }

        return output;
    }

    /// <summary>Layer normalization over the last dimension with scale and optional bias; also the means and inverse standard deviations.</summary>
    private static (HostTensor Y, double[] Means, double[] Inverse) LayerNorm(HostTensor x, long hidden, double epsilon, HostTensor gamma, HostTensor? beta)
    {
        var rows = x.Count / hidden;
        var (means, inverse) = (new double[rows], new double[rows]);
        for (long r = 0; r < rows; r++)
        {
            double sum = 0, squares = 0;
            for (long j = 0; j < hidden; j++)
            {
                sum += x[(r * hidden) + j];
            }

            var mean = sum / hidden;
            for (long j = 0; j < hidden; j++)
            {
                var d = x[(r * hidden) + j] - mean;
                squares += d * d;
            }

            (means[r], inverse[r]) = (mean, 1 / Math.Sqrt((squares / hidden) + epsilon));
        }

        var y = HostTensor.Create(x.Type, x.Shape, i => ((x[i] - means[i / hidden]) * inverse[i / hidden] * gamma[i % hidden]) + (beta is null ? 0 : beta[i % hidden]));
        return (y, means, inverse);
    }

    private static HostTensor Stats(double[] values, long[] shape) => HostTensor.Create(ElementType.Float, shape, i => values[i]);

    private static long Row(EvaluationContext c, long index, long rows, string what) =>
        index >= 0 && index < rows ? index : throw c.Fail($"{what} value {index} is outside the table of {rows} rows");

    private static DimExpr[] SwapLast(DimExpr[] shape) => [.. shape[..^2], shape[^1], shape[^2]];

    private static HostTensor SwapLast(HostTensor t)
    {
        var shape = t.Shape;
        var (rows, cols) = (shape[^2], shape[^1]);
        long[] swapped = [.. shape[..^2], cols, rows];
        return HostTensor.Create(t.Type, swapped, i =>
        {
            var (matrix, rest) = (i / (rows * cols), i % (rows * cols));
            var (col, row) = (rest / rows, rest % rows);
            return t[(matrix * rows * cols) + (row * cols) + col];
        });
    }

    private static long Offset(long[] position, long[] strides)
    {
        long offset = 0;
        for (var d = 0; d < position.Length; d++)
        {
            offset += position[d] * strides[d];
        }

        return offset;
    }
}
