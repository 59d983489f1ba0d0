using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>One rewrite of an ONNX model; it edits the model in place and says what it changed.</summary>
public interface IModelTransform
{
    /// <summary>Short name for reports (constant-folding, fp16, int8, prune).</summary>
    string Name { get; }

    /// <summary>Rewrites <paramref name="model"/> in place; throws <see cref="BatchwiseException"/> naming the node it cannot handle. Returns a one-line summary.</summary>
    string Apply(OnnxModel model);
}
