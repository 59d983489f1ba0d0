using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>The fused-elementwise token rewriting done by hand gives what the regular expressions it replaced gave.</summary>
public sealed class TokenReplacementTests
{
    public static TheoryData<string> Texts() =>
    [
        "x0 + x1",
        "max(x0, (float)0) * x12 - x1x2 + _x3 + x4_ + 2x5 + x",
        "x0*x1/(1.0f+expf(-x0)) + xx1 + x01",
        "const float t3 = (float)((@12@ + @0@) * @7 @ + @@ + @3@@4@ + a@5@b);",
        string.Empty,
        "no tokens here",
    ];

    [Theory]
    [MemberData(nameof(Texts))]
    public void Operand_tokens_are_replaced_as_the_word_bounded_regex_replaced_them(string text)
    {
        static string Name(int k) => "(v" + k.ToString(CultureInfo.InvariantCulture) + ")";
        var want = Regex.Replace(text, @"\bx(\d+)\b", m => Name(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)), RegexOptions.CultureInvariant);
        Assert.Equal(want, GraphCompiler.ReplaceOperands(text, Name));
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void Leaf_tokens_are_replaced_as_the_regex_replaced_them(string text)
    {
        static string Name(int id) => "x" + (id * 2).ToString(CultureInfo.InvariantCulture);
        var want = Regex.Replace(text, "@([0-9]+)@", m => Name(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)), RegexOptions.CultureInvariant);
        var got = new StringBuilder("> ");
        GraphCompiler.AppendWithLeaves(got, text, Name);
        Assert.Equal("> " + want, got.ToString());
    }
}
