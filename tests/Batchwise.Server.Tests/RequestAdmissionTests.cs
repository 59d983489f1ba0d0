using Grpc.Core;

namespace Batchwise.Server.Tests;

public sealed class RequestAdmissionTests
{
    [Fact]
    public void Charges_past_the_queue_budget_are_refused_and_every_byte_comes_back_on_dispose()
    {
        var admission = new RequestAdmission(maxRequestBytes: 1000, maxQueueBytes: 1000);
        var first = admission.Admit();
        first.Charge(700);
        using (var second = admission.Admit())
        {
            var e = Assert.Throws<InferenceError>(() => second.Charge(400));
            Assert.Equal(503, e.HttpStatus);
            Assert.Equal(StatusCode.ResourceExhausted, e.GrpcStatus);
            Assert.Equal(1, e.RetryAfterSeconds);
            Assert.Contains("--max-queue-bytes", e.Message, StringComparison.Ordinal);
            second.Charge(300);
            Assert.Equal(1000, admission.HeldBytes);
        }

        Assert.Equal(700, admission.HeldBytes);
        first.Dispose();
        first.Dispose();
        Assert.Equal(0, admission.HeldBytes);
        Assert.Equal(0, admission.InFlight);
        Assert.Equal(2, admission.Accepted);
    }

    [Fact]
    public void A_request_larger_than_the_whole_budget_is_413_not_retryable()
    {
        var admission = new RequestAdmission(maxRequestBytes: 100, maxQueueBytes: 1000);
        using var lease = admission.Admit();
        var e = Assert.Throws<InferenceError>(() => lease.Charge(1001));
        Assert.Equal(413, e.HttpStatus);
        Assert.Null(e.RetryAfterSeconds);
        var tooBig = Assert.Throws<InferenceError>(() => admission.CheckRequestBytes(101));
        Assert.Equal(413, tooBig.HttpStatus);
        Assert.Equal(StatusCode.ResourceExhausted, tooBig.GrpcStatus);
        Assert.Contains("--max-request-bytes", tooBig.Message, StringComparison.Ordinal);
        admission.CheckRequestBytes(100);
    }

    [Fact]
    public async Task Draining_refuses_new_requests_and_completes_when_the_accepted_ones_finish()
    {
        var admission = new RequestAdmission(1000, 1000);
        var accepted = admission.Admit();
        Assert.Equal(TimeSpan.MaxValue, admission.SinceLastRefusal);
        admission.BeginDrain();
        var e = Assert.Throws<InferenceError>(() => admission.Admit());
        Assert.Equal(503, e.HttpStatus);
        Assert.Equal(StatusCode.Unavailable, e.GrpcStatus);
        Assert.True(admission.SinceLastRefusal < TimeSpan.FromMinutes(1), "the refusal is remembered: the drain waits for refusals to stop before closing the listener");
        var idle = admission.WhenIdleAsync(TestContext.Current.CancellationToken);
        Assert.False(idle.IsCompleted);
        accepted.Dispose();
        await idle.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
    }

    [Theory]
    [InlineData(0L, 1L)]
    [InlineData(1L, -1L)]
    [InlineData(1L << 31, 1L << 40)]
    [InlineData(1L, 1L << 51)]
    public void Limits_outside_their_range_are_refused_naming_the_flag(long request, long queue)
    {
        var e = Assert.Throws<BatchwiseException>(() => new RequestAdmission(request, queue));
        Assert.Contains(request is < 1 or > int.MaxValue ? "--max-request-bytes" : "--max-queue-bytes", e.Message, StringComparison.Ordinal);
    }
}
