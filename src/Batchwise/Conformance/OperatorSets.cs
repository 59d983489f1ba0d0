namespace Batchwise.Conformance;

/// <summary>Named operator lists for `batchwise conformance --ops PRESET`.</summary>
public static class OperatorSets
{
    /// <summary>The operators the CUDA engine must cover (issue 3, item 5).</summary>
    public static IReadOnlyList<string> CudaIssue3 { get; } =
    [
        "Conv", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Add", "Sub",
        "Mul", "Div", "Pow", "Sqrt", "Exp", "Erf", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Split",
        "Slice", "Resize", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Gemm", "MatMul", "Softmax",
        "LayerNormalization", "ReduceMean", "Gather", "Cast", "Shape", "Constant", "Identity", "Pad", "Expand", "Where",
    ];

    /// <summary>Every preset by name.</summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<string>> Presets { get; } = new Dictionary<string, IReadOnlyList<string>>(StringComparer.OrdinalIgnoreCase)
    {
        ["cuda-issue-3"] = CudaIssue3,
    };

    /// <summary>Parses --ops: a comma-separated list of operator names and/or preset names.</summary>
    public static IReadOnlySet<string> Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var result = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (Presets.TryGetValue(item, out var preset))
            {
                result.UnionWith(preset);
            }
            else if (item.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
            {
                result.Add(item);
            }
            else
            {
                throw new BatchwiseException($"--ops item '{item}' is neither an operator name nor a preset", $"Use operator names (Conv,Relu) or a preset: {string.Join(", ", Presets.Keys)}.");
            }
        }

        if (result.Count == 0)
        {
            throw new BatchwiseException("--ops names no operators", $"Use operator names (Conv,Relu) or a preset: {string.Join(", ", Presets.Keys)}.");
        }

        return result;
    }
}
