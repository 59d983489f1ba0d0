using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Tests.Transforms;

/// <summary>Zoo models at small sizes and the checks every transform test shares.</summary>
internal static class TransformTestModels
{
    public const string Bert = "zoo:bert?seq=16&layers=2&hidden=64&heads=4&vocab=100";

    public static TheoryData<string> All() => new()
    {
        "zoo:mlp",
        "zoo:resnet18?size=64",
        "zoo:resnet50?size=64",
        "zoo:mobilenetv2?size=64",
        "zoo:yolov8n?size=64",
        Bert,
    };

    public static TheoryData<string> Classifiers() => new()
    {
        "zoo:resnet18?size=64",
        "zoo:resnet50?size=64",
        "zoo:mobilenetv2?size=64",
    };

    public static TheoryData<string> Convolutional() => new()
    {
        "zoo:resnet18?size=64",
        "zoo:resnet50?size=64",
        "zoo:mobilenetv2?size=64",
        "zoo:yolov8n?size=64",
    };

    /// <summary>A copy of a zoo model after the clean-up every optimize run does.</summary>
    public static (OnnxModel Original, OnnxModel Result) CleanedUp(string spec)
    {
        var original = ModelZoo.Build(spec);
        var result = OnnxModel.FromProto(original.Proto.Clone(), original.Name);
        new ConstantFolding().Apply(result);
        new BatchNormFolding().Apply(result);
        new DeadNodeRemoval().Apply(result);
        return (original, result);
    }

    /// <summary>Runs a model and returns its first output.</summary>
    public static Tensor RunFirstOutput(OnnxModel model, long batch = 2, int seed = 3)
    {
        using var session = new OrtEngine().Load(model, new EngineOptions());
        return session.Run(SeededInputs.Create(model, batch, seed))[0];
    }

    public static int Count(OnnxModel model, string opType) => model.Graph.Node.Count(n => n.OpType == opType);
}
