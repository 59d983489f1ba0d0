using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>Fixes the spatial size (height, width) of every image input (rank 4, NCHW) of a fully convolutional model, and checks by running it that nothing in the graph hard-codes another size.</summary>
public sealed class StaticInputSize(long width, long height) : IModelTransform
{
    /// <summary>Image width in pixels.</summary>
    public long Width { get; } = width > 0 ? width : throw new BatchwiseException($"--input-size width must be positive, got {width}", "Write e.g. --input-size 320 or --input-size 480x640 (height x width).");

    /// <summary>Image height in pixels.</summary>
    public long Height { get; } = height > 0 ? height : throw new BatchwiseException($"--input-size height must be positive, got {height}", "Write e.g. --input-size 320 or --input-size 480x640 (height x width).");

    /// <inheritdoc/>
    public string Name => "input-size";

    /// <summary>Parses a size the way Batchwise writes sizes everywhere: SIZE, or HEIGHTxWIDTH (e.g. 320 or 480x640).</summary>
    public static StaticInputSize Parse(string text)
    {
        var size = Analysis.InputSize.Parse(text, "--input-size");
        return new StaticInputSize(size.Width, size.Height);
    }

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph;
        var inits = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var images = graph.Input.Where(i => !inits.Contains(i.Name) && i.Type?.TensorType?.Shape?.Dim.Count == 4).ToList();
        if (images.Count == 0)
        {
            throw new BatchwiseException($"--input-size needs an image input (rank 4, NCHW); '{model.Name}' has {string.Join(", ", model.Inputs)}", "Use --input-size only with convolutional image models.");
        }

        var before = string.Join(", ", images.Select(i => OnnxModel.ToSpec(i).ShapeText));
        foreach (var input in images)
        {
            var dims = input.Type.TensorType.Shape.Dim;
            dims[2] = new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = Height };
            dims[3] = new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = Width };
        }

        // Intermediate shapes recorded for the old size are now wrong; engines re-infer them.
        graph.ValueInfo.Clear();
        foreach (var output in graph.Output)
        {
            var shape = output.Type?.TensorType?.Shape;
            if (shape is null)
            {
                continue;
            }

            for (var d = 1; d < shape.Dim.Count; d++)
            {
                shape.Dim[d] = new OnnxProto.TensorShapeProto.Types.Dimension { DimParam = $"{output.Name}_dim{d}" };
            }
        }

        // Proof by running: a graph that bakes in the old size (a Reshape constant, a Gemm after Flatten, a grid of anchors) fails here, and ONNX Runtime names the node.
        try
        {
            var outputs = Run(model);
            for (var o = 0; o < graph.Output.Count; o++)
            {
                var shape = graph.Output[o].Type?.TensorType?.Shape;
                for (var d = 1; shape is not null && d < shape.Dim.Count; d++)
                {
                    shape.Dim[d] = new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = outputs[o].Shape[d] };
                }
            }
        }
        catch (BatchwiseException e)
        {
            var node = OrtFailure.NodeIn(OrtFailure.AllMessages(e));
            var where = node is null ? "the graph" : node;
            throw new BatchwiseException(
                $"--input-size {Height}x{Width} is not possible for '{model.Name}': {where} hard-codes a shape for the original size ({OrtFailure.Detail(e)})",
                "The model is not fully convolutional there (a Reshape constant, Flatten+Gemm with fixed features, or fixed anchors); re-export it at the size you want.",
                e);
        }

        return $"image inputs {before} -> [.., {Height}, {Width}]";
    }

    private static IReadOnlyList<Tensor> Run(OnnxModel model)
    {
        using var session = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "basic" });
        return session.Run(SeededInputs.Create(model, 1));
    }
}
