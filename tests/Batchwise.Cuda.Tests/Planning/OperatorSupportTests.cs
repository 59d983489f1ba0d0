using Batchwise.Cuda.Planning;
using Batchwise.Operators;

namespace Batchwise.Cuda.Tests.Planning;

public sealed class OperatorSupportTests
{
    [Fact]
    public void Every_registry_operator_is_lowered_or_refused_with_a_reason()
    {
        var defaultDomain = OperatorRegistry.All.Where(s => s.Domain.Length == 0).Select(s => s.OpType).ToHashSet(StringComparer.Ordinal);
        var undecided = defaultDomain.Where(op => !OperatorSupport.Lowered.Contains(op) && !OperatorSupport.Refused.ContainsKey(op)).Order(StringComparer.Ordinal).ToList();
        Assert.True(undecided.Count == 0, $"no CUDA lowering or refusal for: {string.Join(", ", undecided)}");
        Assert.Empty(OperatorSupport.Lowered.Intersect(OperatorSupport.Refused.Keys));
        Assert.Empty(OperatorSupport.Lowered.Except(defaultDomain));
        Assert.Empty(OperatorSupport.Refused.Keys.Except(defaultDomain));
        Assert.All(OperatorSupport.Refused.Values, reason => Assert.False(string.IsNullOrWhiteSpace(reason)));
    }
}
