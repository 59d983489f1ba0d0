using Batchwise.Engines;

namespace Batchwise.Cuda;

/// <summary>End-to-end runs (bench --transfers): every run uploads its inputs and downloads its outputs.</summary>
internal sealed partial class CudaPreparedRun : ITransferTiming
{
    /// <inheritdoc/>
    public TransferTimes? LastTransferTimes { get; private set; }

    /// <summary>The execution context this run holds (tests read its staging events to see copies overlap compute).</summary>
    internal Planning.ExecutionContext Context => CurrentContext;

    private double RunWithTransfers()
    {
        LastTransferTimes = CurrentContext.RunWithTransfers();
        return LastTransferTimes.TotalSeconds;
    }

    /// <summary>The outputs the last end-to-end run downloaded into page-locked memory; null when it was not one.</summary>
    private List<Tensor>? StagedOutputs()
    {
        if (LastTransferTimes is null)
        {
            return null;
        }

        var staging = CurrentContext.Staging;
        var result = new List<Tensor>(CurrentPlan.Outputs.Count);
        for (var i = 0; i < CurrentPlan.Outputs.Count; i++)
        {
            var o = CurrentPlan.Outputs[i];
            if (o.Constant is not null)
            {
                result.Add(o.Constant.CastTo(o.Type).ToTensor());
                continue;
            }

            var t = Tensor.Zeros(o.Type, o.Shape);
            staging.Output(i).CopyTo(t.Data);
            result.Add(t);
        }

        return result;
    }
}
