using Batchwise.Analysis;
using Batchwise.Engines;
using Batchwise.Zoo;
using OnnxProto = Onnx;

namespace Batchwise.Tests.Analysis;

public sealed class LayerRatesTests
{
    /// <summary>A fake table: rate = peak x min(1, N / saturation) x (outputs / 1024)^0.5, at N = 256 … 65,536 (x4) for outputs 64 and 1024, K 64 and 1024.</summary>
    private static List<LayerRatePoint> Table(double peak, double saturation) =>
        [.. from o in new[] { 64.0, 1024 }
            from k in new[] { 64.0, 1024 }
            from n in new[] { 256.0, 1024, 4096, 16384, 65536 }
            select new LayerRatePoint(o, k, n, peak * Math.Min(1, n / saturation) * Math.Sqrt(o / 1024) * Math.Sqrt(k / 1024))];

    private static DeviceCeilings WithTables(double convPeak = 200e12, double gemmPeak = 600e12, double saturation = 16384) => Synthetic.Gpu() with
    {
        LayerRates = new Dictionary<string, IReadOnlyList<LayerRatePoint>>
        {
            [LayerRates.Key("fp16", "conv")] = Table(convPeak, saturation),
            [LayerRates.Key("fp16", "gemm")] = Table(gemmPeak, saturation),
            [LayerRates.Key("fp32", "conv")] = Table(convPeak / 10, saturation),
            [LayerRates.Key("fp32", "gemm")] = Table(gemmPeak / 10, saturation),
        },
        KernelFloorSeconds = 2e-6,
    };

    [Fact]
    public void Rate_at_a_measured_point_is_the_measured_rate()
    {
        var table = Table(100e12, 16384);
        Assert.Equal(100e12 * 0.25, LayerRates.Rate(table, 1024, 1024, 4096)!.Value, 1e6);
        Assert.Equal(100e12 * 0.25 * 0.25 * 0.25, LayerRates.Rate(table, 64, 64, 4096)!.Value, 1e6);
    }

    [Fact]
    public void Rate_between_two_n_is_interpolated_in_log_n_and_log_rate()
    {
        // Halfway in log N between 1,024 and 4,096 (N = 2,048): the geometric mean of the two rates.
        var table = Table(100e12, 16384);
        var expected = Math.Sqrt(100e12 * (1024.0 / 16384) * 100e12 * (4096.0 / 16384));
        Assert.Equal(expected, LayerRates.Rate(table, 1024, 1024, 2048)!.Value, 1e6);
    }

    [Fact]
    public void Below_the_smallest_n_a_call_takes_the_same_time()
    {
        var table = Table(100e12, 16384);
        var at256 = LayerRates.Rate(table, 1024, 1024, 256)!.Value;
        Assert.Equal(at256 / 4, LayerRates.Rate(table, 1024, 1024, 64)!.Value, 1e6);
    }

    [Fact]
    public void A_measured_dip_at_larger_n_is_kept_and_the_last_rate_holds_past_it()
    {
        // cuDNN's fast algorithms need workspace that grows with the batch: past the engine's limit the rate falls, and the
        // engine meets the same fall at that size, so the table's lower point prices it (not the best rate before it).
        List<LayerRatePoint> table = [new(256, 256, 1000, 10e12), new(256, 256, 10_000, 50e12), new(256, 256, 100_000, 40e12)];
        Assert.Equal(40e12, LayerRates.Rate(table, 256, 256, 100_000)!.Value, 1e6);
        Assert.Equal(Math.Sqrt(50e12 * 40e12), LayerRates.Rate(table, 256, 256, Math.Sqrt(10_000.0 * 100_000))!.Value, 1e6);
        Assert.Equal(40e12, LayerRates.Rate(table, 256, 256, 1e7)!.Value, 1e6);
    }

    [Fact]
    public void Between_channel_and_k_nodes_the_rate_is_bilinear_in_log_space_and_outside_the_edge_rate_or_time_holds()
    {
        var table = Table(100e12, 16384);

        // Outputs 256 is halfway in log between 64 and 1024: the rate scales as sqrt(outputs), so the fake is reproduced exactly.
        Assert.Equal(100e12 * Math.Sqrt(256.0 / 1024), LayerRates.Rate(table, 256, 1024, 65536)!.Value, 1e6);
        Assert.Equal(100e12 * Math.Sqrt(256.0 / 1024) * Math.Sqrt(256.0 / 1024), LayerRates.Rate(table, 256, 256, 65536)!.Value, 1e6);

        // Past the largest measured channels and K: the edge node's rate; below the smallest: the edge node's time.
        Assert.Equal(100e12, LayerRates.Rate(table, 4096, 8192, 65536)!.Value, 1e6);
        Assert.Equal(LayerRates.Rate(table, 64, 64, 65536)!.Value * (16.0 / 64) * (9.0 / 64), LayerRates.Rate(table, 16, 9, 65536)!.Value, 1e6);
    }

    [Fact]
    public void Empty_table_or_empty_layer_gives_no_rate()
    {
        Assert.Null(LayerRates.Rate([], 64, 64, 100));
        Assert.Null(LayerRates.Rate(Table(1e12, 1000), 64, 64, 0));
    }

    [Fact]
    public void Convolution_is_priced_from_the_conv_table_plus_one_graph_node()
    {
        var ceilings = WithTables().WithPrecision("fp16");
        var conv = new LayerWork("conv", "Conv", 2.0 * 1024 * 4096 * 1024, 1e3, new GemmShape(1024, 4096, 1024), 4096, Kind: LayerKind.Convolution);
        var p = new ThroughputPredictor(ceilings).Predict(conv);
        Assert.Equal(conv.Flops / (200e12 * 0.25), p.ComputeSeconds, 12);
        Assert.True(ceilings.OpOverheadSeconds > 0);
        Assert.Equal(ceilings.OpOverheadSeconds, p.OverheadSeconds); // the table's call ran among repeats of itself; a model's layer follows another kernel
        Assert.Equal(200e12 * 0.25 / 700e12, p.Efficiency, 9);
    }

    [Fact]
    public void Pointwise_convolution_takes_the_gemm_table_in_fp16_and_the_conv_table_in_fp32()
    {
        var pointwise = new LayerWork("pw", "Conv", 2.0 * 1024 * 65536 * 1024, 1e3, new GemmShape(1024, 65536, 1024), 65536, Kind: LayerKind.PointwiseConvolution);
        Assert.Equal(600e12, WithTables().WithPrecision("fp16").MeasuredRate(pointwise)!.Value, 1e6);
        Assert.Equal(20e12, WithTables().MeasuredRate(pointwise)!.Value, 1e6);
    }

    [Fact]
    public void A_gemm_whose_outputs_or_k_leave_a_partial_tile_is_priced_as_the_padded_product()
    {
        // 408 outputs and K (RegNet's third stage) compute as 448 x 448: the padded product's table rate, over the layer's own FLOPs.
        var ceilings = WithTables().WithPrecision("fp16");
        LayerWork Pointwise(long m, long k) => new("pw", "Conv", 2.0 * m * 65536 * k, 1e3, new GemmShape(m, 65536, k), 65536, Kind: LayerKind.PointwiseConvolution);
        var padded = ceilings.MeasuredRate(Pointwise(448, 448))!.Value;
        Assert.Equal(padded * 408 * 408 / (448.0 * 448), ceilings.MeasuredRate(Pointwise(408, 408))!.Value, 1e3);
        Assert.Equal(448, DeviceCeilings.GemmTilePadded(408));
        Assert.Equal(40, DeviceCeilings.GemmTilePadded(40)); // within one tile: as it is
        Assert.Equal(1024, DeviceCeilings.GemmTilePadded(1000));

        // Aligned sizes and other tables are as they were.
        Assert.Equal(600e12, ceilings.MeasuredRate(Pointwise(1024, 1024))!.Value, 1e6);
    }

    [Fact]
    public void Matmul_looks_up_its_output_columns_and_rows_as_n()
    {
        // Rows (batch x sequence) = 4,096 are N; the 1,024 output columns are the table's outputs.
        var matmul = new LayerWork("fc", "MatMul", 2.0 * 4096 * 1024 * 1024, 1e3, new GemmShape(4096, 1024, 1024), 4096, Kind: LayerKind.MatMul);
        Assert.Equal(600e12 * 0.25, WithTables().WithPrecision("fp16").MeasuredRate(matmul)!.Value, 1e6);
    }

    [Fact]
    public void A_model_whose_weights_exceed_the_cache_prices_small_products_from_the_cold_weights_table()
    {
        // The cold table (half the hot rates) reaches N = 1,024: a product at N = 256 takes it once the weights exceed
        // the 50 MB cache, one at N = 4,096 (past the cold table) keeps the hot table, and so do small models, ceilings
        // without a cache size and ceilings without a cold table.
        var cold = (from o in new[] { 64.0, 1024 } from k in new[] { 64.0, 1024 } from n in new[] { 256.0, 1024 } select new LayerRatePoint(o, k, n, 300e12 * Math.Min(1, n / 16384) * Math.Sqrt(o / 1024) * Math.Sqrt(k / 1024))).ToList();
        var ceilings = WithTables().WithPrecision("fp16") with
        {
            CacheBytes = 50L << 20,
            LayerRates = new Dictionary<string, IReadOnlyList<LayerRatePoint>>(WithTables().LayerRates) { [LayerRates.Key("fp16", "gemm-cold")] = cold },
        };
        LayerWork Product(long n) => new("fc", "MatMul", 2.0 * n * 1024 * 1024, 1e3, new GemmShape(n, 1024, 1024), n, Kind: LayerKind.MatMul, WeightBytes: 2.0 * 1024 * 1024);
        var hot = ceilings.MeasuredRate(Product(256))!.Value;
        var big = ceilings.ForWeights(170e6);
        Assert.True(big.WeightsCold);
        Assert.Equal(hot / 2, big.MeasuredRate(Product(256))!.Value, 1e6);
        Assert.Equal(ceilings.MeasuredRate(Product(4096))!.Value, big.MeasuredRate(Product(4096))!.Value, 1e6);
        Assert.False(ceilings.ForWeights(20e6).WeightsCold);
        Assert.Equal(hot, ceilings.ForWeights(20e6).MeasuredRate(Product(256))!.Value, 1e6);
        Assert.False((ceilings with { CacheBytes = null }).ForWeights(170e6).WeightsCold);
        Assert.False(WithTables().WithPrecision("fp16").ForWeights(170e6).WeightsCold);

        // A product of two activations (attention's) keeps the hot table: its operands were just written.
        Assert.Equal(hot, big.MeasuredRate(Product(256) with { WeightBytes = 0 })!.Value, 1e6);

        // A convolution keeps the conv table either way.
        var conv = new LayerWork("c", "Conv", 1e9, 1e3, new GemmShape(1024, 256, 1024), 256, Kind: LayerKind.Convolution);
        Assert.Equal(ceilings.MeasuredRate(conv)!.Value, big.MeasuredRate(conv)!.Value, 1e6);
    }

    [Fact]
    public void Without_a_table_for_the_precision_layers_fall_back_to_the_gemm_curve_and_the_verdict_says_so()
    {
        var tf32 = WithTables().For(new EngineOptions { AllowTf32 = true });
        var conv = new LayerWork("conv", "Conv", 1e9, 1e3, new GemmShape(256, 16384, 2304), 16384, Kind: LayerKind.Convolution);
        Assert.Null(tf32.MeasuredRate(conv));
        Assert.Equal(tf32.Efficiency(16384), new ThroughputPredictor(tf32).Predict(conv).Efficiency, 12);

        var work = ModelWork.FromLayers("one-conv", "x [1, 8]", [ModelWork.Layer("conv", "Conv", 1e9, 1e6, 1e6, new GemmShape(256, 1000, 2304), kind: LayerKind.Convolution)]);
        var e = Explainer.Explain(work, tf32, [1, 4], []);
        Assert.Contains(e.Verdict, l => l.Contains("0 of 1 GEMM and convolution layers", StringComparison.Ordinal) && l.Contains("no tf32 table measured", StringComparison.Ordinal));
    }

    /// <summary>A fake grouped/depthwise table in the per-group view: rate = peak x min(1, N / saturation), at outputs per group 1 and 32, K 9 and 288.</summary>
    private static List<LayerRatePoint> GroupTable(double peak) =>
        [.. from o in new[] { 1.0, 32 }
            from k in new[] { 9.0, 288 }
            from n in new[] { 1e5, 1e6, 1e7 }
            select new LayerRatePoint(o, k, n, peak * Math.Min(1, n / 1e7))];

    private static DeviceCeilings WithGroupTables() => WithTables() with
    {
        LayerRates = new Dictionary<string, IReadOnlyList<LayerRatePoint>>(WithTables().LayerRates)
        {
            [LayerRates.Key("fp16", "depthwise")] = GroupTable(2e12),
            [LayerRates.Key("fp16", "depthwise-s2")] = GroupTable(1e12),
            [LayerRates.Key("fp16", "grouped")] = GroupTable(40e12),
            [LayerRates.Key("fp16", "grouped-s2")] = GroupTable(20e12),
            [LayerRates.Key("fp32", "grouped")] = GroupTable(8e12),
        },
    };

    [Fact]
    public void Depthwise_convolution_is_priced_from_the_depthwise_table_at_n_times_channels()
    {
        // 96 channels, 3x3, N = 10,416 pixels: one output per group, K = 9, N x groups = 1e6 (a tenth of the table's saturation).
        var ceilings = WithGroupTables().WithPrecision("fp16");
        var work = new LayerWork("dw", "Conv", 2.0 * 96 * 9 * 10_416, 1e3, new GemmShape(96, 10_416, 9, Groups: 96), 10_416, Kind: LayerKind.DepthwiseConvolution);
        Assert.Equal(2e12 * 10_416 * 96 / 1e7, ceilings.MeasuredRate(work)!.Value, 1e3);
        var p = new ThroughputPredictor(ceilings).Predict(work);
        Assert.Equal(work.Flops / ceilings.MeasuredRate(work)!.Value, p.ComputeSeconds, 15);
        Assert.Equal(ceilings.OpOverheadSeconds, p.OverheadSeconds); // one graph node's cost past the table's time

        // The same layer at stride 2 reads the stride-2 table, half the rate here.
        var strided = work with { Kind = LayerKind.StridedDepthwiseConvolution };
        Assert.Equal(ceilings.MeasuredRate(work)!.Value / 2, ceilings.MeasuredRate(strided)!.Value, 1e3);
    }

    [Fact]
    public void Grouped_convolution_is_priced_from_the_grouped_table_per_group_of_its_precision()
    {
        // 32 groups of 32 channels, 3x3 (K = 288), N = 1e5 pixels: outputs per group 32, N x groups = 3.2e6.
        var work = new LayerWork("g", "Conv", 2.0 * 1024 * 288 * 1e5, 1e3, new GemmShape(1024, 100_000, 288, Groups: 32), 100_000, Kind: LayerKind.GroupedConvolution);
        Assert.Equal(40e12 * 0.32, WithGroupTables().WithPrecision("fp16").MeasuredRate(work)!.Value, 1e3);
        Assert.Equal(8e12 * 0.32, WithGroupTables().WithPrecision("fp32").MeasuredRate(work)!.Value, 1e3);

        // A depthwise layer is not priced from the grouped table: fp32 has no depthwise table, so it falls back.
        var dw = new LayerWork("dw", "Conv", 1e9, 1e3, new GemmShape(96, 10_000, 9, Groups: 96), 10_000, Kind: LayerKind.DepthwiseConvolution);
        Assert.Null(WithGroupTables().WithPrecision("fp32").MeasuredRate(dw));
    }

    [Fact]
    public void Grouped_tables_at_several_sides_are_interpolated_in_log_side_by_the_layers_output_side()
    {
        // fp32 "grouped" (28x28) at 8 TFLOP/s x 0.32 here; the same kind measured at 14x14 four times slower and at 7x7
        // eight times slower (cuDNN's fp32 grouped kernels: RegNetX-016's 14x14 layers ran 3x their 28x28 table's time).
        var ceilings = WithGroupTables() with
        {
            LayerRates = new Dictionary<string, IReadOnlyList<LayerRatePoint>>(WithGroupTables().LayerRates)
            {
                [LayerRates.Key("fp32", LayerRates.SideTable("grouped", 14))] = GroupTable(2e12),
                [LayerRates.Key("fp32", LayerRates.SideTable("grouped", 7))] = GroupTable(1e12),
            },
        };
        var fp32 = ceilings.WithPrecision("fp32");
        LayerWork At(long pixelsPerSample) => new("g", "Conv", 2.0 * 1024 * 288 * 1e5, 1e3, new GemmShape(1024, 100_000, 288, Groups: 32), 100_000, Kind: LayerKind.GroupedConvolution, PixelsPerSample: pixelsPerSample);

        Assert.Equal(8e12 * 0.32, fp32.MeasuredRate(At(28 * 28))!.Value, 1e3);
        Assert.Equal(2e12 * 0.32, fp32.MeasuredRate(At(14 * 14))!.Value, 1e3);
        Assert.Equal(1e12 * 0.32, fp32.MeasuredRate(At(7 * 7))!.Value, 1e3);
        Assert.Equal(4e12 * 0.32, fp32.MeasuredRate(At(20 * 20 - 4))!.Value, 0.02e12); // sqrt(396) = 19.9: halfway in log between 14 and 28
        Assert.Equal(8e12 * 0.32, fp32.MeasuredRate(At(56 * 56))!.Value, 1e3);        // past the largest side: its rate
        Assert.Equal(1e12 * 0.32, fp32.MeasuredRate(At(4 * 4))!.Value, 1e3);          // below the smallest: its rate

        // A layer without its positions, and a precision measured at one side only, take the 28x28 table as before.
        Assert.Equal(8e12 * 0.32, fp32.MeasuredRate(At(14 * 14) with { PixelsPerSample = null })!.Value, 1e3);
        Assert.Equal(40e12 * 0.32, ceilings.WithPrecision("fp16").MeasuredRate(At(14 * 14))!.Value, 1e3);
    }

    [Fact]
    public void Dense_convolutions_take_the_conv_tables_at_their_output_side_where_further_sides_were_measured()
    {
        // fp32 "conv" (56x56 images past one image) at 20 TFLOP/s at saturation; "conv@14" measured twice as fast and
        // "conv@28" at the same rate. fp16 measured one side only.
        var ceilings = WithTables() with
        {
            LayerRates = new Dictionary<string, IReadOnlyList<LayerRatePoint>>(WithTables().LayerRates)
            {
                [LayerRates.Key("fp32", LayerRates.SideTable("conv", 28))] = Table(20e12, 16384),
                [LayerRates.Key("fp32", LayerRates.SideTable("conv", 14))] = Table(40e12, 16384),
            },
        };
        var fp32 = ceilings.WithPrecision("fp32");
        LayerWork At(long pixelsPerSample) => new("c", "Conv", 2.0 * 1024 * 1024 * 65536, 1e3, new GemmShape(1024, 65536, 1024), 65536, Kind: LayerKind.Convolution, PixelsPerSample: pixelsPerSample);

        Assert.Equal(40e12, fp32.MeasuredRate(At(14 * 14))!.Value, 1e3);
        Assert.Equal(20e12, fp32.MeasuredRate(At(28 * 28))!.Value, 1e3);
        Assert.Equal(20e12, fp32.MeasuredRate(At(56 * 56))!.Value, 1e3);
        Assert.Equal(20e12, fp32.MeasuredRate(At(112 * 112))!.Value, 1e3);   // past the largest side (the 56x56 table): its rate
        Assert.Equal(40e12, fp32.MeasuredRate(At(7 * 7))!.Value, 1e3);       // below the smallest side measured: its rate
        Assert.Equal(Math.Sqrt(20e12 * 40e12), fp32.MeasuredRate(At(396))!.Value, 0.2e12); // sqrt(396) = 19.9: about halfway in log between 14 and 28

        // Without its positions, as a 1x1 (the side tables are 3x3 layers'), and in fp16 (one side measured), the 56x56 table as before.
        Assert.Equal(20e12, fp32.MeasuredRate(At(14 * 14) with { PixelsPerSample = null })!.Value, 1e3);
        Assert.Equal(20e12, fp32.MeasuredRate(At(14 * 14) with { Kind = LayerKind.PointwiseConvolution })!.Value, 1e3);
        Assert.Equal(200e12, ceilings.WithPrecision("fp16").MeasuredRate(At(14 * 14))!.Value, 1e3);
    }

    [Fact]
    public void Fp32_pointwise_and_strided_convolutions_take_their_own_tables_by_side_where_measured()
    {
        // The 3x3 stride-1 table at 150 TFLOP/s (cuDNN's Winograd, FLOPs counted as direct); the 1x1s at 40 (56x56) and
        // 20 (7x7), the stride-2 3x3s at 30 (56x56) and 10 (7x7).
        var tables = new Dictionary<string, IReadOnlyList<LayerRatePoint>>(WithTables().LayerRates)
        {
            [LayerRates.Key("fp32", "conv")] = Table(150e12, 16384),
            [LayerRates.Key("fp32", LayerRates.ConvTableName("pointwise", 56))] = Table(40e12, 16384),
            [LayerRates.Key("fp32", LayerRates.ConvTableName("pointwise", 7))] = Table(20e12, 16384),
            [LayerRates.Key("fp32", LayerRates.ConvTableName("conv-s2", 56))] = Table(30e12, 16384),
            [LayerRates.Key("fp32", LayerRates.ConvTableName("conv-s2", 7))] = Table(10e12, 16384),
        };
        Assert.Equal("pointwise", LayerRates.ConvTableName("pointwise", LayerRates.ConvTableSide));
        Assert.Equal("conv-s2@7", LayerRates.ConvTableName("conv-s2", 7));
        Assert.Equal([56, 56, 56, 28, 28], new[] { "conv", "pointwise", "conv-s2", "grouped", "grouped-s2" }.Select(LayerRates.BareTableSide));
        var ceilings = WithTables() with { LayerRates = tables };
        var fp32 = ceilings.WithPrecision("fp32");
        LayerWork At(LayerKind kind, long side) => new("c", "Conv", 2.0 * 1024 * 1024 * 65536, 1e3, new GemmShape(1024, 65536, 1024), 65536, Kind: kind, PixelsPerSample: side * side);

        Assert.Equal(150e12, fp32.MeasuredRate(At(LayerKind.Convolution, 7))!.Value, 1e3);
        Assert.Equal(40e12, fp32.MeasuredRate(At(LayerKind.PointwiseConvolution, 56))!.Value, 1e3);
        Assert.Equal(20e12, fp32.MeasuredRate(At(LayerKind.PointwiseConvolution, 7))!.Value, 1e3);
        Assert.Equal(Math.Sqrt(40e12 * 20e12), fp32.MeasuredRate(At(LayerKind.PointwiseConvolution, 20))!.Value, 0.3e12); // log-halfway between 7 and 56
        Assert.Equal(20e12, fp32.MeasuredRate(At(LayerKind.StridedPointwiseConvolution, 7))!.Value, 1e3);
        Assert.Equal(10e12, fp32.MeasuredRate(At(LayerKind.StridedConvolution, 7))!.Value, 1e3);
        Assert.Equal(30e12, fp32.MeasuredRate(At(LayerKind.StridedConvolution, 112))!.Value, 1e3); // a stem past the largest side

        // fp16 keeps its routes: 1x1s from the GEMM table, strided layers from the 3x3 table (cuDNN's tensor cores).
        var fp16 = ceilings.WithPrecision("fp16");
        Assert.Equal(fp16.MeasuredRate(At(LayerKind.Convolution, 7))!.Value, fp16.MeasuredRate(At(LayerKind.StridedConvolution, 7))!.Value, 1e3);
        Assert.Equal(fp16.MeasuredRate(At(LayerKind.Convolution, 7))!.Value, fp16.MeasuredRate(At(LayerKind.StridedPointwiseConvolution, 7))!.Value, 1e3);

        // A file without the new tables (schema 10 and before): every fp32 dense layer from the 3x3 table, as then.
        var old = WithTables() with { LayerRates = new Dictionary<string, IReadOnlyList<LayerRatePoint>>(WithTables().LayerRates) { [LayerRates.Key("fp32", "conv")] = Table(150e12, 16384) } };
        foreach (var kind in new[] { LayerKind.PointwiseConvolution, LayerKind.StridedPointwiseConvolution, LayerKind.StridedConvolution })
        {
            Assert.Equal(150e12, old.WithPrecision("fp32").MeasuredRate(At(kind, 7))!.Value, 1e3);
        }

        // With schema 10's 3x3 side tables: a strided layer takes them by its side as it did then, a 1x1 the 56x56 table.
        var withSides = old with { LayerRates = new Dictionary<string, IReadOnlyList<LayerRatePoint>>(old.LayerRates) { [LayerRates.Key("fp32", "conv@7")] = Table(50e12, 16384) } };
        Assert.Equal(50e12, withSides.WithPrecision("fp32").MeasuredRate(At(LayerKind.StridedConvolution, 7))!.Value, 1e3);
        Assert.Equal(150e12, withSides.WithPrecision("fp32").MeasuredRate(At(LayerKind.PointwiseConvolution, 7))!.Value, 1e3);
    }

    [Fact]
    public void A_conv_layers_work_carries_its_output_positions_per_sample()
    {
        var work = ModelWork.Analyze(ModelZoo.Build("zoo:resnet18"), null).At(4, channelsLast: false);
        var stem = work.First(l => l.OpType == "Conv");
        Assert.Equal(112 * 112, stem.PixelsPerSample);
        Assert.Equal(4 * 112 * 112, stem.ParallelSize);
        Assert.All(work.Where(l => l.OpType is not ("Conv" or "ConvTranspose")), l => Assert.Null(l.PixelsPerSample));
    }

    [Fact]
    public void Strided_grouped_convolution_is_priced_from_the_stride_2_grouped_table()
    {
        // RegNet's first block of a stage: the same routine at stride 2, whose own table here runs at half the stride-1 rate.
        var work = new LayerWork("g", "Conv", 2.0 * 1024 * 288 * 1e5, 1e3, new GemmShape(1024, 100_000, 288, Groups: 32), 100_000, Kind: LayerKind.StridedGroupedConvolution);
        var ceilings = WithGroupTables().WithPrecision("fp16");
        Assert.Equal(20e12 * 0.32, ceilings.MeasuredRate(work)!.Value, 1e3);
        Assert.Equal(ceilings.MeasuredRate(work with { Kind = LayerKind.GroupedConvolution })!.Value / 2, ceilings.MeasuredRate(work)!.Value, 1e3);
        Assert.True(work.IsGroupedConvolution);

        // fp32 measured no stride-2 table here: the layer falls back (and the verdict counts it so), not to the stride-1 rate.
        Assert.Null(WithGroupTables().WithPrecision("fp32").MeasuredRate(work));
    }

    [Fact]
    public void Verdict_counts_grouped_layers_priced_from_the_tables_and_those_that_fell_back()
    {
        var work = ModelWork.FromLayers("two", "x [1, 8]",
        [
            ModelWork.Layer("dw", "Conv", 1e8, 1e6, 1e3, new GemmShape(96, 10_000, 9, Groups: 96), 10_000, LayerKind.DepthwiseConvolution),
            ModelWork.Layer("dw2", "Conv", 1e8, 1e6, 1e3, new GemmShape(96, 2_500, 9, Groups: 96), 2_500, LayerKind.StridedDepthwiseConvolution),
        ]);
        var ceilings = WithGroupTables() with
        {
            LayerRates = WithGroupTables().LayerRates.Where(t => t.Key != LayerRates.Key("fp16", "depthwise-s2")).ToDictionary(),
        };
        var e = Explainer.Explain(work, ceilings.WithPrecision("fp16"), [1, 4], []);
        Assert.Contains(e.Verdict, l => l.Contains("1 grouped/depthwise convolution from the fp16 grouped and depthwise tables", StringComparison.Ordinal)
            && l.Contains("1 grouped/depthwise convolution at the fp32 CUDA-core rate", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(96, 96, 1, 1, LayerKind.DepthwiseConvolution)]
    [InlineData(96, 96, 1, 2, LayerKind.StridedDepthwiseConvolution)]
    [InlineData(192, 96, 1, 1, LayerKind.GroupedConvolution)] // a channel multiplier of 2: cuDNN's grouped kernels, not the depthwise one
    [InlineData(256, 32, 8, 1, LayerKind.GroupedConvolution)]
    [InlineData(256, 32, 8, 2, LayerKind.StridedGroupedConvolution)]
    public void Grouped_and_depthwise_kinds_follow_the_filter_and_stride(long outputs, long groups, long perGroup, long stride, LayerKind expected)
    {
        var node = new OnnxProto.NodeProto { OpType = "Conv", Input = { "x", "w" }, Output = { "y" } };
        node.Attribute.Add(new OnnxProto.AttributeProto { Name = "group", I = groups, Type = OnnxProto.AttributeProto.Types.AttributeType.Int });
        node.Attribute.Add(new OnnxProto.AttributeProto { Name = "strides", Ints = { stride, stride }, Type = OnnxProto.AttributeProto.Types.AttributeType.Ints });
        var w = new OnnxProto.TensorProto { Name = "w", Dims = { outputs, perGroup, 3, 3 } };
        Assert.Equal(expected, LayerRates.KindOf(node, new Dictionary<string, OnnxProto.TensorProto> { ["w"] = w }));
    }

    [Fact]
    public void Group_view_is_outputs_per_group_k_and_n_times_groups()
    {
        Assert.Equal((8.0, 72.0, 4000.0), LayerRates.GroupView(new GemmShape(256, 125, 72, Groups: 32), 125));
    }

    [Fact]
    public void Grouped_convolution_without_a_table_runs_at_the_fp32_core_rate_and_other_kernels_pay_the_kernel_floor()
    {
        var ceilings = WithTables().WithPrecision("fp16");
        var predictor = new ThroughputPredictor(ceilings);
        var depthwise = predictor.Predict(new LayerWork("dw", "Conv", 50e9, 1e3, new GemmShape(32, 1000, 9, Groups: 32), 1000, Kind: LayerKind.DepthwiseConvolution));
        Assert.Equal(50e9 / 50e12, depthwise.ComputeSeconds, 12);
        Assert.Equal(2e-6, depthwise.OverheadSeconds);
        var add = predictor.Predict(new LayerWork("add", "Add", 1e3, 1e3));
        Assert.Equal(2e-6, add.OverheadSeconds);
        Assert.Equal(Bound.Launch, add.Bound);
    }

    [Fact]
    public void Knee_follows_the_measured_table_saturation()
    {
        // One convolution of N = 1,000 per sample on a table saturating at N = 16,384: doubling pays until b = 16.
        var work = ModelWork.FromLayers("one-conv", "x [1, 8]", [ModelWork.Layer("conv", "Conv", 2.0 * 1024 * 1024 * 1000, 1e3, 1e3, new GemmShape(1024, 1000, 1024), kind: LayerKind.Convolution)]);
        var predictor = new ThroughputPredictor(WithTables(saturation: 16384).WithPrecision("fp16"));
        var curve = predictor.Predict([1, 2, 4, 8, 16, 32, 64, 128, 256], work.At);
        Assert.True(curve[3].Throughput > 1.8 * curve[2].Throughput);
        Assert.True(curve[8].Throughput < 1.05 * curve[6].Throughput);
        Assert.Equal(16, Explainer.KneeOf(curve.Select(p => (p.BatchSize, p.Throughput))));
    }

    [Fact]
    public void Layer_kinds_follow_the_convolution_attributes()
    {
        var resnet = ModelWork.Analyze(ModelZoo.Build("zoo:resnet50"), null).At(1).Where(l => l.OpType == "Conv").ToList();
        Assert.Equal(LayerKind.StridedConvolution, resnet[0].Kind); // the 7x7 stride-2 stem
        Assert.Contains(resnet, l => l.Kind == LayerKind.PointwiseConvolution && l.Gemm!.K == 64);
        Assert.Contains(resnet, l => l.Kind == LayerKind.Convolution && l.Gemm!.K == 576); // a stride-1 3x3 of the first stage

        // The stride-2 1x1 downsampling convolutions are not pointwise GEMMs (the engine gives them to cuDNN), nor are the
        // stride-2 3x3s stride-1 ones (zoo:resnet50 is torchvision's v1.5: the stride on the 3x3): three of each.
        Assert.Equal([256L, 512, 1024], resnet.Where(l => l.Kind == LayerKind.StridedPointwiseConvolution).Select(l => (long)l.Gemm!.K));
        Assert.Equal([1152L, 2304, 4608], resnet.Where(l => l.Kind == LayerKind.StridedConvolution).Skip(1).Select(l => (long)l.Gemm!.K));

        var mobilenet = ModelWork.Analyze(ModelZoo.Build("zoo:mobilenetv2"), null).At(1);
        Assert.Contains(mobilenet, l => l.Kind == LayerKind.DepthwiseConvolution);
        Assert.Contains(mobilenet, l => l.Kind == LayerKind.StridedDepthwiseConvolution);
        Assert.DoesNotContain(mobilenet, l => l.Kind == LayerKind.GroupedConvolution);
        var mlp = ModelWork.Analyze(ModelZoo.Build("zoo:mlp"), null).At(1);
        Assert.All(mlp.Where(l => l.OpType is "Gemm" or "MatMul"), l => Assert.Equal(LayerKind.MatMul, l.Kind));
        Assert.All(mlp.Where(l => l.OpType is not ("Gemm" or "MatMul")), l => Assert.Equal(LayerKind.Other, l.Kind));
    }
}
