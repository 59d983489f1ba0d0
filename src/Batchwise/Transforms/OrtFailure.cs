using System.Text.RegularExpressions;

namespace Batchwise.Transforms;

/// <summary>Reads which node an ONNX Runtime error is about, so transforms can name it.</summary>
internal static partial class OrtFailure
{
    /// <summary>"Gemm 'fc'" when the message names a node, else null.</summary>
    public static string? NodeIn(string message)
    {
        var m = RunningNode().Match(message);
        if (m.Success)
        {
            return $"{m.Groups[1].Value} '{m.Groups[2].Value}'";
        }

        m = InferenceNode().Match(message);
        return m.Success ? $"{m.Groups[2].Value} '{m.Groups[1].Value}'" : null;
    }

    /// <summary>The innermost message of an exception chain (ONNX Runtime's own words).</summary>
    public static string Detail(Exception e)
    {
        var inner = e;
        while (inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }

        var text = inner.Message;
        var i = text.IndexOf("Status Message:", StringComparison.Ordinal);
        text = i >= 0 ? text[(i + "Status Message:".Length)..] : text;
        var nl = text.IndexOfAny(['\r', '\n']);
        text = (nl < 0 ? text : text[..nl]).Trim();

        // Drop ONNX Runtime's prefixes ("[ErrorCode:Fail] Node (x) Op (Add) "): the caller names the node itself.
        text = ErrorCode().Replace(text, string.Empty);
        return InferenceNode().Replace(text, string.Empty).Trim();
    }

    /// <summary>The full text of an exception chain.</summary>
    public static string AllMessages(Exception e)
    {
        var parts = new List<string>();
        for (var x = e; x is not null; x = x.InnerException)
        {
            parts.Add(x.Message);
        }

        return string.Join(" | ", parts);
    }

    [GeneratedRegex(@"^\[ErrorCode:\w+\]\s*")]
    private static partial Regex ErrorCode();

    [GeneratedRegex(@"running (\w+) node\. Name:'([^']*)'")]
    private static partial Regex RunningNode();

    [GeneratedRegex(@"Node \(([^)]*)\) Op \((\w+)\)")]
    private static partial Regex InferenceNode();
}
