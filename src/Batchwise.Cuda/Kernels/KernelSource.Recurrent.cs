using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>The cell a recurrent kernel runs.</summary>
internal enum RecurrentCell
{
    /// <summary>RNN: h = f(x W + h R + b).</summary>
    Rnn,

    /// <summary>GRU: gates z, r, h (two phases per step: the reset gate of every unit before the candidate).</summary>
    Gru,

    /// <summary>LSTM: gates i, o, f, c; cell state; peepholes.</summary>
    Lstm,
}

/// <summary>An ONNX recurrent activation with its alpha and beta (ONNX's defaults where the node omits them).</summary>
internal sealed record RecurrentActivation(string Name, double Alpha, double Beta);

/// <summary>
/// What a recurrent kernel's source depends on: the cell, its activations (names; alpha and beta travel as arguments),
/// the element types of its tensors, which optional inputs and outputs exist, clip, GRU's linear_before_reset and
/// LSTM's input_forget. Sizes, strides and the direction travel as arguments.
/// </summary>
internal sealed record RecurrentSignature(
    RecurrentCell Cell,
    RecurrentActivation[] Activations,
    ElementType X,
    ElementType Weights,
    ElementType Recurrence,
    ElementType? Bias,
    bool Lengths,
    ElementType? InitialH,
    ElementType? InitialC,
    ElementType? Peepholes,
    ElementType? Y,
    ElementType? Yh,
    ElementType? Yc,
    bool Clip,
    bool LinearBeforeReset,
    bool InputForget);

/// <summary>The sizes and strides of one recurrent node (kernel arguments).</summary>
/// <param name="Seq">Time steps.</param>
/// <param name="Batch">Batch rows.</param>
/// <param name="Input">Input features.</param>
/// <param name="Hidden">Hidden units.</param>
/// <param name="Directions">1 or 2.</param>
/// <param name="Reverse">True when the single direction runs backwards (direction="reverse").</param>
/// <param name="XStrides">X's strides for (t, b).</param>
/// <param name="YStrides">Y's strides for (t, d, b).</param>
/// <param name="StateStrides">Y_h/Y_c/initial states' strides for (d, b).</param>
/// <param name="Clip">The clip threshold (when the signature clips).</param>
internal sealed record RecurrentSizes(long Seq, long Batch, long Input, long Hidden, long Directions, bool Reverse, (long T, long B) XStrides, (long T, long D, long B) YStrides, (long D, long B) StateStrides, double Clip);

/// <summary>Generators for recurrent layers (RNN, GRU, LSTM).</summary>
internal static partial class KernelSource
{
    /// <summary>Activation names the recurrent kernels implement (lower case).</summary>
    public static readonly IReadOnlySet<string> RecurrentActivationNames = new HashSet<string>(StringComparer.Ordinal)
    {
        "sigmoid", "tanh", "relu", "softsign", "softplus", "leakyrelu", "thresholdedrelu", "elu", "affine", "scaledtanh", "hardsigmoid",
    };

    /// <summary>Floats of state each block keeps in its scratch buffer (two hidden vectors, the cell state, two gate vectors).</summary>
    public const int RecurrentStatePerUnit = 5;

    /// <summary>Threads per block of a recurrent kernel: the hidden units rounded up to a warp, at most 256.</summary>
    public static int RecurrentBlock(long hidden) => (int)Math.Clamp((hidden + 31) / 32 * 32, 32, BlockSize);

    /// <summary>
    /// One block per (direction, batch row) runs the whole recurrence of its sequence: threads over hidden units, a loop
    /// over the row's time steps (its sequence length; backwards for the reverse direction), each step reading the
    /// previous hidden vector from one half of a ping-pong buffer in <c>state</c> and writing the other, then a
    /// <c>__syncthreads</c> that every thread of the block reaches (the loop bounds depend only on the block; GRU has a
    /// second barrier between its gates and its candidate, also unconditional). Gate pre-activations are the dot products
    /// of x_t with W's rows and of h with R's rows, accumulated in fp32 whatever the storage type; the cell state and
    /// hidden state stay fp32 in <c>state</c> ([blocks, 5 x hidden] floats). Y at steps past a row's length is zero;
    /// Y_h and Y_c hold the state after the row's last step (the initial state for length 0).
    /// </summary>
    public static KernelCode Recurrent(RecurrentSignature s, RecurrentSizes z)
    {
        var w = new KernelWriter(small: false);
        var seq = w.I64("seq", z.Seq);
        var batch = w.I64("batch", z.Batch);
        var input = w.I64("input", z.Input);
        var hidden = w.I64("hidden", z.Hidden);
        var blocks = w.I64("blocks", z.Directions * z.Batch);
        var reverse = w.I32("reverse", z.Reverse ? 1 : 0);
        var (xt, xb) = (w.I64("x_t", z.XStrides.T), w.I64("x_b", z.XStrides.B));
        var (yt, yd, yb) = (w.I64("y_t", z.YStrides.T), w.I64("y_d", z.YStrides.D), w.I64("y_b", z.YStrides.B));
        var (sd, sb) = (w.I64("s_d", z.StateStrides.D), w.I64("s_b", z.StateStrides.B));
        var clip = s.Clip ? w.Float("clip", z.Clip) : null;
        var perDirection = s.Cell switch { RecurrentCell.Rnn => 1, RecurrentCell.Gru => 2, _ => 3 };
        var gates = s.Cell switch { RecurrentCell.Rnn => 1, RecurrentCell.Gru => 3, _ => 4 };
        if (s.Activations.Length != perDirection && s.Activations.Length != 2 * perDirection)
        {
            throw new ArgumentException("a recurrent kernel takes one activation set per direction", nameof(s));
        }

        var alphas = new string[s.Activations.Length];
        var betas = new string[s.Activations.Length];
        for (var k = 0; k < s.Activations.Length; k++)
        {
            alphas[k] = w.Float($"alpha{k}", s.Activations[k].Alpha);
            betas[k] = w.Float($"beta{k}", s.Activations[k].Beta);
        }

        // f(slot, v): the activation of slot (0 .. perDirection-1) of this block's direction, applied to variable v.
        string Act(int slot, string v)
        {
            if (s.Activations.Length == perDirection)
            {
                return Apply(s.Activations[slot].Name, alphas[slot], betas[slot], v);
            }

            var second = perDirection + slot;
            return $"(d == 0 ? {Apply(s.Activations[slot].Name, alphas[slot], betas[slot], v)} : {Apply(s.Activations[second].Name, alphas[second], betas[second], v)})";
        }

        string Clip(string v) => clip is null ? v : $"fminf(fmaxf({v}, -{clip}), {clip})";

        var body = w.Body;
        body.Append($$"""
                const i64 blk = blockIdx.x;
                if (blk >= {{blocks}}) return;
                const i64 H = {{hidden}}, I = {{input}}, G = {{gates}};
                const i64 d = blk / {{batch}}, b = blk - d * {{batch}};
                const bool rev = {{reverse}} != 0 || d == 1;
                float* hbuf = state + blk * {{RecurrentStatePerUnit}} * H;
                float* cst = hbuf + 2 * H;
                float* zs = hbuf + 3 * H;
                float* rs = hbuf + 4 * H;
                i64 len = {{seq}};

            """);
        if (s.Lengths)
        {
            body.Append($$"""
                    { const i64 l = (i64)lens[b]; len = l < 0 ? 0 : (l < {{seq}} ? l : {{seq}}); }

                """);
        }

        body.Append($$"""
                const i64 so = d * {{sd}} + b * {{sb}};
                for (i64 j = threadIdx.x; j < H; j += blockDim.x) {
                    hbuf[j] = {{(s.InitialH is null ? "0.f" : "(float)h0[so + j]")}};
                    cst[j] = {{(s.InitialC is null ? "0.f" : "(float)c0[so + j]")}};
                }

            """);
        if (s.Y is not null)
        {
            body.Append($$"""
                    for (i64 t = len; t < {{seq}}; t++)
                        for (i64 j = threadIdx.x; j < H; j += blockDim.x) y[t * {{yt}} + d * {{yd}} + b * {{yb}} + j] = ({{CType(s.Y.Value)}})0.f;

                """);
        }

        // pre(g): x_t . W[g] + Wb[g] + Rb[g] for the gate row g*H+j; rdot(g, vec): vec . R[g].
        var wrow = "(d * G * H + g * H + j)";
        string Pre(string g) => $$"""
            { const i64 g = {{g}}; const i64 row = {{wrow}}; float acc = {{(s.Bias is null ? "0.f" : "(float)bias[d * 2 * G * H + g * H + j]")}}; for (i64 i = 0; i < I; i++) acc += (float)xs[i] * (float)wt[row * I + i]; px[g] = acc; }
            """;
        string RDot(string g, string vec) => $$"""
            { const i64 g = {{g}}; const i64 row = {{wrow}}; float acc = {{(s.Bias is null ? "0.f" : "(float)bias[d * 2 * G * H + G * H + g * H + j]")}}; for (i64 k = 0; k < H; k++) acc += {{vec}} * (float)rt[row * H + k]; ph[g] = acc; }
            """;

        body.Append($$"""
                __syncthreads();
                for (i64 step = 0; step < len; step++) {
                    const i64 t = rev ? len - 1 - step : step;
                    const float* hp = hbuf + (step & 1) * H;
                    float* hn = hbuf + ((step + 1) & 1) * H;
                    const {{CType(s.X)}}* xs = x + t * {{xt}} + b * {{xb}};

            """);
        var yStore = s.Y is null ? string.Empty : $"y[t * {yt} + d * {yd} + b * {yb} + j] = ({CType(s.Y.Value)})hv;";
        switch (s.Cell)
        {
            case RecurrentCell.Rnn:
                body.Append($$"""
                            for (i64 j = threadIdx.x; j < H; j += blockDim.x) {
                                float px[1], ph[1];
                                {{Pre("0")}}
                                {{RDot("0", "hp[k]")}}
                                const float v = {{Clip("px[0] + ph[0]")}};
                                const float hv = {{Act(0, "v")}};
                                hn[j] = hv;
                                {{yStore}}
                            }
                            __syncthreads();

                    """);
                break;
            case RecurrentCell.Gru:
                var recurrent = s.LinearBeforeReset ? "rs[j] * ph[2]" : "ph[2]";
                var gated = s.LinearBeforeReset ? "hp[k]" : "rs[k] * hp[k]";
                body.Append($$"""
                            for (i64 j = threadIdx.x; j < H; j += blockDim.x) {
                                float px[2], ph[2];
                                {{Pre("0")}}
                                {{Pre("1")}}
                                {{RDot("0", "hp[k]")}}
                                {{RDot("1", "hp[k]")}}
                                const float vz = {{Clip("px[0] + ph[0]")}};
                                const float vr = {{Clip("px[1] + ph[1]")}};
                                zs[j] = {{Act(0, "vz")}};
                                rs[j] = {{Act(0, "vr")}};
                            }
                            __syncthreads();
                            for (i64 j = threadIdx.x; j < H; j += blockDim.x) {
                                float px[3], ph[3];
                                {{Pre("2")}}
                                {{RDot("2", gated)}}
                                const float vh = {{Clip($"px[2] + {recurrent}")}};
                                const float cand = {{Act(1, "vh")}};
                                const float hv = (1.f - zs[j]) * cand + zs[j] * hp[j];
                                hn[j] = hv;
                                {{yStore}}
                            }
                            __syncthreads();

                    """);
                break;
            default:
                string Peep(int g) => s.Peepholes is null ? "0.f" : $"(float)peep[d * 3 * H + {g} * H + j]";
                body.Append($$"""
                            for (i64 j = threadIdx.x; j < H; j += blockDim.x) {
                                float px[4], ph[4];
                                {{Pre("0")}}
                                {{Pre("1")}}
                                {{Pre("2")}}
                                {{Pre("3")}}
                                {{RDot("0", "hp[k]")}}
                                {{RDot("1", "hp[k]")}}
                                {{RDot("2", "hp[k]")}}
                                {{RDot("3", "hp[k]")}}
                                const float c = cst[j];
                                const float vi = {{Clip($"px[0] + ph[0] + {Peep(0)} * c")}};
                                const float ig = {{Act(0, "vi")}};
                                const float vf = {{Clip($"px[2] + ph[2] + {Peep(2)} * c")}};
                                const float fg = {{(s.InputForget ? "1.f - ig" : Act(0, "vf"))}};
                                const float vc = {{Clip("px[3] + ph[3]")}};
                                const float cn = fg * c + ig * {{Act(1, "vc")}};
                                cst[j] = cn;
                                const float vo = {{Clip($"px[1] + ph[1] + {Peep(1)} * cn")}};
                                const float og = {{Act(0, "vo")}};
                                const float hv = og * {{Act(2, "cn")}};
                                hn[j] = hv;
                                {{yStore}}
                            }
                            __syncthreads();

                    """);
                break;
        }

        body.Append("""
                }
                const float* hf = hbuf + (len & 1) * H;

            """);
        if (s.Yh is not null || s.Yc is not null)
        {
            body.Append("    for (i64 j = threadIdx.x; j < H; j += blockDim.x) {\n");
            if (s.Yh is not null)
            {
                body.Append($"        yh[so + j] = ({CType(s.Yh.Value)})hf[j];\n");
            }

            if (s.Yc is not null)
            {
                body.Append($"        yc[so + j] = ({CType(s.Yc.Value)})cst[j];\n");
            }

            body.Append("    }\n");
        }

        static string P(ElementType? t, string name, bool isConst = true) => $"{(isConst ? "const " : string.Empty)}{(t is null ? "float" : CType(t.Value))}* __restrict__ {name}";
        return w.Build(string.Join(", ", new[]
        {
            P(s.Y, "y", false), P(s.Yh, "yh", false), P(s.Yc, "yc", false), P(s.X, "x"), P(s.Weights, "wt"), P(s.Recurrence, "rt"), P(s.Bias, "bias"),
            "const int* __restrict__ lens", P(s.InitialH, "h0"), P(s.InitialC, "c0"), P(s.Peepholes, "peep"), "float* __restrict__ state", KernelWriter.ArgsParameter,
        }));
    }

    /// <summary>An ONNX recurrent activation of variable <paramref name="v"/> as C (alpha and beta read from the arguments).</summary>
    private static string Apply(string name, string alpha, string beta, string v) => name switch
    {
        "sigmoid" => $"bw_sigmoid({v})",
        "tanh" => $"tanhf({v})",
        "relu" => $"fmaxf({v}, 0.f)",
        "softsign" => $"({v} / (1.f + fabsf({v})))",
        "softplus" => $"bw_softplus({v})",
        "leakyrelu" => $"({v} >= 0.f ? {v} : {alpha} * {v})",
        "thresholdedrelu" => $"({v} > {alpha} ? {v} : 0.f)",
        "elu" => $"({v} >= 0.f ? {v} : {alpha} * (expf({v}) - 1.f))",
        "affine" => $"({alpha} * {v} + {beta})",
        "scaledtanh" => $"({alpha} * tanhf({beta} * {v}))",
        "hardsigmoid" => $"fminf(fmaxf({alpha} * {v} + {beta}, 0.f), 1.f)",
        _ => throw new BatchwiseException($"activation '{name}' is not an ONNX recurrent activation", "Use one of Sigmoid, Tanh, Relu, HardSigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, Elu, Softsign, Softplus."),
    };
}
