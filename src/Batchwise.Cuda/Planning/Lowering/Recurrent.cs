using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Recurrent layers: RNN, GRU and LSTM with ONNX's full semantics (opsets 7-22: forward, reverse and bidirectional;
/// layout 0 and 1; optional B, sequence_lens, initial_h, initial_c, P; each output optional; the activations with their
/// alpha and beta; clip; linear_before_reset; input_forget). One generated kernel per node runs the whole recurrence,
/// a block per (direction, batch row): see <see cref="KernelSource.Recurrent"/>.
/// </summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> RecurrentLowerings()
    {
        yield return ("RNN", new((c, n, i, a) => c.LowerRecurrent(n, i, a, RecurrentCell.Rnn), Check: (n, a, o) => RecurrentCheck(a, RecurrentCell.Rnn)));
        yield return ("GRU", new((c, n, i, a) => c.LowerRecurrent(n, i, a, RecurrentCell.Gru), Check: (n, a, o) => RecurrentCheck(a, RecurrentCell.Gru)));
        yield return ("LSTM", new((c, n, i, a) => c.LowerRecurrent(n, i, a, RecurrentCell.Lstm), Check: (n, a, o) => RecurrentCheck(a, RecurrentCell.Lstm)));
    }

    private static string? RecurrentCheck(NodeAttributes attrs, RecurrentCell cell)
    {
        var unknown = (attrs.Strings("activations") ?? []).FirstOrDefault(n => !KernelSource.RecurrentActivationNames.Contains(n.ToLowerInvariant()));
        return unknown is null ? null : $"activation '{unknown}' (not one of ONNX's recurrent activations)";
    }

    /// <summary>
    /// The node's activations for each direction (<see cref="RecurrentOperators.ActivationNames"/>), with alpha and beta taken
    /// in order by the functions that use them (ONNX's defaults and order as the host reference reads them).
    /// </summary>
    private static RecurrentActivation[] RecurrentActivations(NodeAttributes attrs, string opType, int directions)
    {
        var names = RecurrentOperators.ActivationNames(attrs.Strings("activations"), opType, directions, message => new BatchwiseException(message, "Fix the model's activations attribute."));
        var alphas = new Queue<double>(attrs.Floats("activation_alpha") ?? []);
        var betas = new Queue<double>(attrs.Floats("activation_beta") ?? []);
        return names.Select(n =>
        {
            var name = n.ToLowerInvariant();
            if (!KernelSource.RecurrentActivationNames.Contains(name))
            {
                throw new BatchwiseException($"activation '{n}' is not an ONNX recurrent activation", "Use one of Sigmoid, Tanh, Relu, HardSigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, Elu, Softsign, Softplus.");
            }

            var (alpha, beta) = RecurrentOperators.ActivationParameters(name, alphas, betas);
            return new RecurrentActivation(name, alpha, beta);
        }).ToArray();
    }

    private void LowerRecurrent(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs, RecurrentCell cell)
    {
        var (x, w, r) = (ins[0]!, ins[1]!, ins[2]!);
        RequireFloat(x);
        var gates = cell switch { RecurrentCell.Rnn => 1, RecurrentCell.Gru => 3, _ => 4 };
        var opset = _model.Opset;
        var layout = opset >= 14 ? attrs.Int("layout", 0) : 0;
        var direction = attrs.String("direction", "forward");
        var directions = direction switch
        {
            "forward" or "reverse" => 1,
            "bidirectional" => 2,
            _ => throw new BatchwiseException($"direction '{direction}' is not forward, reverse or bidirectional", "Fix the model's direction attribute."),
        };
        if (x.Shape.Length != 3 || w.Shape.Length != 3 || r.Shape.Length != 3)
        {
            throw new BatchwiseException($"X, W and R must be 3-D, got {Engines.Tensor.ShapeText(x.Shape)}, {Engines.Tensor.ShapeText(w.Shape)} and {Engines.Tensor.ShapeText(r.Shape)}", "Check the model's shapes.");
        }

        var (seq, batch, input) = layout == 0 ? (x.Shape[0], x.Shape[1], x.Shape[2]) : (x.Shape[1], x.Shape[0], x.Shape[2]);
        var hidden = attrs.Has("hidden_size") ? attrs.Int("hidden_size", 0) : r.Shape[2];
        if (w.Shape[0] != directions || w.Shape[1] != gates * hidden || w.Shape[2] != input || r.Shape[0] != directions || r.Shape[1] != gates * hidden || r.Shape[2] != hidden)
        {
            throw new BatchwiseException($"{node.OpType} W {Engines.Tensor.ShapeText(w.Shape)} and R {Engines.Tensor.ShapeText(r.Shape)} do not fit {directions} direction(s), {gates} gate(s) of {hidden} hidden units and {input} inputs", "Check the model's weights.");
        }

        PlanValue? Optional(int k, long count, string what)
        {
            var v = ins.ElementAtOrDefault(k);
            if (v is not null && v.Count != count)
            {
                throw new BatchwiseException($"{node.OpType} input {what} has {v.Count} elements, expected {count}", "Check the model's shapes.");
            }

            return v;
        }

        var bias = Optional(3, directions * 2 * gates * hidden, "B");
        var lengths = Optional(4, batch, "sequence_lens");
        var initialH = Optional(5, directions * batch * hidden, "initial_h");
        var initialC = cell == RecurrentCell.Lstm ? Optional(6, directions * batch * hidden, "initial_c") : null;
        var peepholes = cell == RecurrentCell.Lstm ? Optional(7, directions * 3 * hidden, "P") : null;
        if (lengths is not null && lengths.Type != ElementType.Int32)
        {
            throw new BatchwiseException($"{node.OpType} sequence_lens is {lengths.Type.ShortName()}, ONNX requires int32", "Make sequence_lens an int32 tensor.");
        }

        bool Wanted(int k) => node.Output.Count > k && node.Output[k].Length > 0;
        long[] yShape = layout == 0 ? [seq, directions, batch, hidden] : [batch, seq, directions, hidden];
        long[] stateShape = layout == 0 ? [directions, batch, hidden] : [batch, directions, hidden];
        var y = Wanted(0) ? Output(node, 0, x.Type, yShape) : null;
        var yh = Wanted(1) ? Output(node, 1, x.Type, stateShape) : null;
        var yc = cell == RecurrentCell.Lstm && Wanted(2) ? Output(node, 2, x.Type, stateShape) : null;
        if (y is null && yh is null && yc is null)
        {
            return;
        }

        var sizes = new RecurrentSizes(
            seq,
            batch,
            input,
            hidden,
            directions,
            direction == "reverse",
            layout == 0 ? (batch * input, input) : (input, seq * input),
            layout == 0 ? (directions * batch * hidden, batch * hidden, hidden) : (directions * hidden, hidden, seq * directions * hidden),
            layout == 0 ? (batch * hidden, hidden) : (hidden, directions * hidden),
            attrs.Has("clip") ? attrs.Float("clip", 0) : double.PositiveInfinity);
        var signature = new RecurrentSignature(
            cell,
            RecurrentActivations(attrs, node.OpType, directions),
            St(x),
            St(w),
            St(r),
            bias is null ? null : St(bias),
            lengths is not null,
            initialH is null ? null : St(initialH),
            initialC is null ? null : St(initialC),
            peepholes is null ? null : St(peepholes),
            y is null ? null : St(y),
            yh is null ? null : St(yh),
            yc is null ? null : St(yc),
            attrs.Has("clip"),
            cell == RecurrentCell.Gru && opset >= 3 && attrs.Int("linear_before_reset", 0) != 0,
            cell == RecurrentCell.Lstm && attrs.Int("input_forget", 0) != 0);
        var blocks = directions * batch;
        // fp32 state whatever the precision: a float32 temp would be stored as float16 in a half plan, so 4-byte words.
        var state = Temp(ElementType.Int32, [Math.Max(1, blocks * KernelSource.RecurrentStatePerUnit * hidden)]);
        var block = KernelSource.RecurrentBlock(hidden);
        int D(PlanValue? v) => v is null ? -1 : Dev(v);
        Emit(new KernelStep(_node, KernelSource.Recurrent(signature, sizes), blocks * block, block, [D(y), D(yh), D(yc), Dev(x), Dev(w), Dev(r), D(bias), D(lengths), D(initialH), D(initialC), D(peepholes), Dev(state)]));
    }
}
