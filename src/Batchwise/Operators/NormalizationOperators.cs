using Batchwise.Analysis;
using Batchwise.Onnx;
using static Batchwise.Operators.OperatorRegistry;

namespace Batchwise.Operators;

/// <summary>
/// Normalizations and softmax. FLOPs per element: 2 for BatchNormalization (folded scale and shift), 8 for
/// LayerNormalization, 5 for Softmax and LogSoftmax.
/// </summary>
internal static class NormalizationOperators
{
    public static IEnumerable<OperatorSchema> Records()
    {
        yield return Define("BatchNormalization", [1, 6, 7, 9, 14, 15])
            .WithAttributes(
                Attribute.Ints("consumed_inputs", required: true, until: 5),
                Attribute.Float("epsilon", 1e-05f),
                Attribute.Int("is_test", 0, until: 6),
                Attribute.Float("momentum", 0.9f),
                Attribute.Int("spatial", 1, until: 8),
                Attribute.Int("training_mode", 0, since: 14))
            .Shape(c => [c.In(0).ShapeOnly, c.In(3).ShapeOnly, c.In(4).ShapeOnly])
            .Host(c =>
            {
                if (c.Opset >= 14 && c.Int("training_mode") != 0)
                {
                    throw c.Fail("training mode updates running statistics; only inference is evaluated");
                }

                var (x, scale, bias, mean, variance) = (c.In(0), c.In(1), c.In(2), c.In(3), c.In(4));
                var epsilon = c.Float("epsilon");
                var inner = TensorMath.Product(x.Shape.Skip(2));
                var channels = x.Shape.Length > 1 ? x.Shape[1] : 1;
                return [HostTensor.Create(x.Type, x.Shape, i =>
                {
                    var ch = i / inner % channels;
                    return ((x[i] - mean[ch]) / Math.Sqrt(variance[ch] + epsilon) * scale[ch]) + bias[ch];
                })];
            }, eager: false)
            .Costs(OpCategory.Normalization, c => new OperatorWork(2 * c.OutputElements));

        yield return Define("LayerNormalization", [17])
            .WithAttributes(Attribute.Int("axis", -1), Attribute.Float("epsilon", 1e-05f), Attribute.Int("stash_type", 1))
            .Shape(c =>
            {
                var x = c.In(0);
                var axis = c.Axis(c.Int("axis"), x.Shape.Length);
                var stats = x.Shape.Select((d, i) => i < axis ? d : DimExpr.Of(1)).ToArray();
                var statsType = (ElementType)c.Int("stash_type");
                return [x.ShapeOnly, new SymbolicValue(statsType, stats), new SymbolicValue(statsType, stats)];
            })
            .Host(c =>
            {
                var (x, scale, bias) = (c.In(0), c.In(1), c.Optional(2));
                var axis = c.Axis(c.Int("axis"), x.Shape.Length);
                var (rows, cols) = (TensorMath.Product(x.Shape.Take(axis)), TensorMath.Product(x.Shape.Skip(axis)));
                var epsilon = c.Float("epsilon");
                var y = new double[x.Count];
                var means = new double[rows];
                var inverse = new double[rows];
                var normalised = x.Shape[axis..];
                var scaleStrides = TensorMath.BroadcastStrides(scale.Shape, normalised);
                var biasStrides = bias is null ? null : TensorMath.BroadcastStrides(bias.Shape, normalised);
                var position = new long[normalised.Length];
                for (long r = 0; r < rows; r++)
                {
                    double sum = 0, squares = 0;
                    for (long j = 0; j < cols; j++)
                    {
                        var v = x[(r * cols) + j];
                        sum += v;
                        squares += v * v;
                    }

                    var mean = sum / cols;
                    var inv = 1 / Math.Sqrt(Math.Max(0, (squares / cols) - (mean * mean)) + epsilon);
                    (means[r], inverse[r]) = (mean, inv);
                    for (long j = 0; j < cols; j++)
                    {
                        ConvolutionOperators.Unravel(j, normalised, position);
                        var s = scale[Offset(position, scaleStrides)];
                        var b = bias is null ? 0 : bias[Offset(position, biasStrides!)];
                        y[(r * cols) + j] = ((x[(r * cols) + j] - mean) * inv * s) + b;
                    }
                }

                var statsType = c.OutputCount > 1 ? c.OutputType(1) : ElementType.Float;
                var statsShape = x.Shape.Select((d, i) => i < axis ? d : 1).ToArray();
                return [HostTensor.Create(x.Type, x.Shape, i => y[i]), HostTensor.Create(statsType, statsShape, i => means[i]), HostTensor.Create(statsType, statsShape, i => inverse[i])];
            }, eager: false)
            .Costs(OpCategory.Normalization, c => new OperatorWork(8 * c.OutputElements));

        yield return Define("InstanceNormalization", [1, 6, 22])
            .WithAttributes(Attribute.Ints("consumed_inputs", until: 5), Attribute.Float("epsilon", 1e-05f))
            .Shape(c => [c.In(0).ShapeOnly])
            .Host(c =>
            {
                var (x, scale, bias) = (c.In(0), c.In(1), c.In(2));
                var channels = x.Shape[1];
                var inner = TensorMath.Product(x.Shape.Skip(2));
                return [Normalize(x, x.Count / inner, inner, c.Float("epsilon"), (row, _) => (scale[row % channels], bias[row % channels]))];
            }, eager: false)
            .Costs(OpCategory.Normalization, c => new OperatorWork(8 * c.OutputElements));

        yield return Define("GroupNormalization", [18, 21])
            .WithAttributes(Attribute.Float("epsilon", 1e-05f), Attribute.Int("num_groups", required: true), Attribute.Int("stash_type", 1, since: 21))
            .Shape(c => [c.In(0).ShapeOnly])
            .Host(c =>
            {
                var (x, scale, bias) = (c.In(0), c.In(1), c.In(2));
                var groups = c.Int("num_groups");
                var channels = x.Shape[1];
                var spatial = TensorMath.Product(x.Shape.Skip(2));
                var perGroup = channels / groups * spatial;

                // Opset 18 scales each group; opset 21 each channel.
                return [Normalize(x, x.Count / perGroup, perGroup, c.Float("epsilon"), (row, j) =>
                {
                    var channel = (row % groups * (channels / groups)) + (j / spatial);
                    var k = scale.Count == channels ? channel : row % groups;
                    return (scale[k], bias[k]);
                })];
            }, eager: false)
            .Costs(OpCategory.Normalization, c => new OperatorWork(8 * c.OutputElements));

        yield return Softmax(Define("Softmax", [1, 11, 13]), log: false);
        yield return Softmax(Define("LogSoftmax", [1, 11, 13]), log: true);
    }

    /// <summary>Normalises each of <paramref name="rows"/> runs of <paramref name="cols"/> elements, then scales and shifts by (row, column).</summary>
    private static HostTensor Normalize(HostTensor x, long rows, long cols, double epsilon, Func<long, long, (double Scale, double Bias)> affine)
    {
        var y = new double[x.Count];
        for (long r = 0; r < rows; r++)
        {
            double sum = 0;
            for (long j = 0; j < cols; j++)
            {
                sum += x[(r * cols) + j];
            }

            var mean = sum / cols;
            double variance = 0;
            for (long j = 0; j < cols; j++)
            {
                var d = x[(r * cols) + j] - mean;
                variance += d * d;
            }

            var inv = 1 / Math.Sqrt((variance / cols) + epsilon);
            for (long j = 0; j < cols; j++)
            {
                var (scale, bias) = affine(r, j);
                y[(r * cols) + j] = ((x[(r * cols) + j] - mean) * inv * scale) + bias;
            }
        }

        return HostTensor.Create(x.Type, x.Shape, i => y[i]);
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

    private static OperatorSchema Softmax(OperatorSchema s, bool log) => s
        .WithAttributes(Attribute.Int("axis", 1, until: 12), Attribute.Int("axis", -1, since: 13))
        .Shape(c =>
        {
            _ = c.Axis(c.Int("axis"), c.In(0).Shape.Length);
            return [c.In(0).ShapeOnly];
        })
        .Host(c =>
        {
            var x = c.In(0);
            var axis = c.Axis(c.Int("axis"), x.Shape.Length);

            // Before opset 13 the input is read as 2-D [outer, everything from axis on].
            var (size, inner) = c.Opset >= 13 ? (x.Shape[axis], TensorMath.Product(x.Shape.Skip(axis + 1))) : (TensorMath.Product(x.Shape.Skip(axis)), 1L);
            var outer = size == 0 ? 0 : x.Count / (size * inner);
            var y = new double[x.Count];
            for (long o = 0; o < outer; o++)
            {
                for (long i = 0; i < inner; i++)
                {
                    var first = (o * size * inner) + i;
                    var max = double.NegativeInfinity;
                    for (long k = 0; k < size; k++)
                    {
                        max = Math.Max(max, x[first + (k * inner)]);
                    }

                    double sum = 0;
                    for (long k = 0; k < size; k++)
                    {
                        sum += Math.Exp(x[first + (k * inner)] - max);
                    }

                    for (long k = 0; k < size; k++)
                    {
                        var shifted = x[first + (k * inner)] - max;
                        y[first + (k * inner)] = log ? shifted - Math.Log(sum) : Math.Exp(shifted) / sum;
                    }
                }
            }

            return [HostTensor.Create(x.Type, x.Shape, i => y[i])];
        }, eager: false)
        .Costs(OpCategory.Normalization, c => new OperatorWork(5 * c.OutputElements));
}
