using Batchwise.Batching;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Tests.Batching;

public sealed class BatchPartsTests
{
    private static Tensor Image(int rows, byte seed)
    {
        var t = Tensor.Zeros(ElementType.Float, [rows, 3, 224, 224]);
        for (var i = 0; i < t.Data.Length; i++)
        {
            t.Data[i] = (byte)(seed + (i * 7));
        }

        return t;
    }

    private static byte[] Concatenated(IEnumerable<Tensor> parts) => [.. parts.SelectMany(p => p.Data)];

    [Fact]
    public void Copying_an_input_concatenates_the_requests_rows_in_request_order()
    {
        var requests = new[] { Image(1, 1), Image(2, 50), Image(1, 99) };
        var batch = new BatchParts([.. requests.Select(r => (IReadOnlyList<Tensor>)[r])], 4);
        Assert.Equal([4L, 3L, 224L, 224L], batch.Shape(0));
        Assert.Equal(4L * 602_112, batch.ByteCount(0));
        var target = new byte[batch.ByteCount(0)];
        batch.CopyInput(0, target, threads: 1);
        Assert.Equal(Concatenated(requests), target);
    }

    [Fact]
    public void A_large_batch_copied_on_several_threads_puts_every_request_at_its_own_offset()
    {
        // 12 requests of 602,112 bytes: past the parallel threshold, so the copy is split over threads.
        var requests = Enumerable.Range(0, 12).Select(i => Image(1 + (i % 3), (byte)(i * 17))).ToArray();
        var rows = requests.Sum(r => (int)r.Shape[0]);
        var batch = new BatchParts([.. requests.Select(r => (IReadOnlyList<Tensor>)[r])], rows);
        Assert.True(batch.ByteCount(0) > BatchParts.ParallelCopyBytes);
        var target = new byte[batch.ByteCount(0)];
        batch.CopyInput(0, target, threads: 4);
        Assert.Equal(Concatenated(requests), target);
    }

    [Fact]
    public void A_target_of_the_wrong_size_is_refused_before_anything_is_copied()
    {
        var batch = new BatchParts([[Image(1, 1)], [Image(1, 2)]], 2);
        var target = new byte[batch.ByteCount(0) - 4];
        var e = Assert.Throws<ArgumentException>(() => batch.CopyInput(0, target));
        Assert.Contains("holds", e.Message, StringComparison.Ordinal);
        Assert.All(target, b => Assert.Equal(0, b));
    }

    [Fact]
    public void A_batch_of_one_request_is_that_request_unmerged()
    {
        var only = Image(2, 3);
        var batch = new BatchParts([[only]], 2);
        Assert.Same(only, batch.Single![0]);
        Assert.Same(only, batch.Merge()[0]);
        Assert.Equal([2L, 3L, 224L, 224L], batch.Shape(0));
    }

    [Fact]
    public async Task A_batcher_with_a_parts_execution_hands_it_the_requests_unmerged_and_splits_its_outputs()
    {
        var calls = new List<BatchParts>();
        var options = new BatcherOptions { MaxBatchSize = 8, PreferredBatchSizes = [3], MaxQueueDelay = TimeSpan.FromSeconds(30) };
        await using var batcher = new DynamicBatcher(options, (BatchPartsExecution)((_, batch, _) =>
        {
            lock (calls)
            {
                calls.Add(batch);
            }

            // Output: each row's first byte, as one float per row.
            var merged = batch.Merge()[0];
            var rowBytes = merged.Data.Length / batch.Rows;
            var output = Tensor.From<float>(ElementType.Float, [batch.Rows, 1], [.. Enumerable.Range(0, batch.Rows).Select(r => (float)merged.Data[r * rowBytes])]);
            return Task.FromResult<IReadOnlyList<Tensor>>([output]);
        }));
        var a = Image(1, 10);
        var b = Image(2, 20);
        var results = await Task.WhenAll(batcher.SubmitAsync([a]), batcher.SubmitAsync([b])).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Single(calls);
        Assert.Equal(2, calls[0].Requests.Count);
        Assert.Equal(3, calls[0].Rows);
        Assert.Same(a, calls[0].Requests[0][0]);
        Assert.Equal([(float)a.Data[0]], results[0].Outputs[0].AsSpan<float>().ToArray());
        Assert.Equal([(float)b.Data[0], (float)b.Data[602_112]], results[1].Outputs[0].AsSpan<float>().ToArray());
    }
}
