using System.Text.RegularExpressions;
using Google.Protobuf;
using OnnxProto = Onnx;

namespace Batchwise.Conformance;

/// <summary>One ONNX backend node test: a folder with model.onnx and test_data_set_*/input_*.pb, output_*.pb.</summary>
/// <param name="Name">Folder name, e.g. test_relu.</param>
/// <param name="Directory">Full path of the folder.</param>
/// <param name="Ops">Operator types in the model's graph (domain-qualified when not ai.onnx), sorted; empty when the model cannot be read.</param>
/// <param name="DataSets">The test_data_set_* folders, sorted.</param>
public sealed record NodeTestCase(string Name, string Directory, IReadOnlyList<string> Ops, IReadOnlyList<string> DataSets)
{
    /// <summary>Path of the model file.</summary>
    public string ModelPath => Path.Combine(Directory, "model.onnx");
}

/// <summary>Finds ONNX backend node tests on disk.</summary>
public static class NodeTestSuite
{
    /// <summary>Where the Debian/Ubuntu package libonnx-testdata installs the node tests.</summary>
    public const string DebianDirectory = "/usr/share/libonnx-testdata/data/node";

    /// <summary>
    /// The folders searched when none is given, in order: the Debian package, then onnx/backend/test/data/node in the
    /// site-packages of PYTHONPATH, $VIRTUAL_ENV, $CONDA_PREFIX, the prefix of each python3 on PATH, ~/.local, /usr/local, /usr and /opt/conda.
    /// </summary>
    public static IReadOnlyList<string> DefaultCandidates()
    {
        var candidates = new List<string> { DebianDirectory };
        var roots = new List<string>();
        foreach (var variable in new[] { "VIRTUAL_ENV", "CONDA_PREFIX" })
        {
            var value = Environment.GetEnvironmentVariable(variable);
            if (!string.IsNullOrEmpty(value))
            {
                roots.Add(Path.Combine(value, "lib"));
            }
        }

        // A python3 on PATH inside a virtual environment (e.g. /opt/torch/.venv/bin) has its packages in ../lib.
        foreach (var bin in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            if (File.Exists(Path.Combine(bin, "python3")) && Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(bin)) is { } prefix)
            {
                roots.Add(Path.Combine(prefix, "lib"));
            }
        }

        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (!string.IsNullOrEmpty(home))
        {
            roots.Add(Path.Combine(home, ".local", "lib"));
        }

        roots.AddRange(["/usr/local/lib", "/usr/lib", "/opt/conda/lib"]);
        var sitePackages = new List<string>();
        foreach (var path in (Environment.GetEnvironmentVariable("PYTHONPATH") ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            sitePackages.Add(path);
        }

        foreach (var root in roots.Where(System.IO.Directory.Exists))
        {
            foreach (var python in SafeDirectories(root, "python3*"))
            {
                sitePackages.Add(Path.Combine(python, "site-packages"));
                sitePackages.Add(Path.Combine(python, "dist-packages"));
            }
        }

        candidates.AddRange(sitePackages.Select(s => Path.Combine(s, "onnx", "backend", "test", "data", "node")));
        return candidates.Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>The first default folder that exists, or a clear error listing where it looked.</summary>
    public static string FindDefault()
    {
        var candidates = DefaultCandidates();
        return candidates.FirstOrDefault(System.IO.Directory.Exists)
            ?? throw new BatchwiseException(
                $"No ONNX backend node tests found (looked in {string.Join(", ", candidates)})",
                "Install them (apt-get install libonnx-testdata, or pip install onnx) or pass the folder: batchwise conformance DIR.");
    }

    /// <summary>Lists the test cases under <paramref name="directory"/>, optionally only those whose name matches <paramref name="filter"/> and whose ops are all in <paramref name="ops"/>.</summary>
    public static IReadOnlyList<NodeTestCase> Discover(string directory, Regex? filter = null, IReadOnlySet<string>? ops = null)
    {
        if (!System.IO.Directory.Exists(directory))
        {
            throw new BatchwiseException($"Node test folder '{directory}' not found", "Pass a folder holding test_*/model.onnx, e.g. /usr/share/libonnx-testdata/data/node.");
        }

        var cases = new List<NodeTestCase>();
        var folders = File.Exists(Path.Combine(directory, "model.onnx"))
            ? [directory]
            : System.IO.Directory.GetDirectories(directory).Where(d => File.Exists(Path.Combine(d, "model.onnx")));
        foreach (var folder in folders.Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(folder);
            if (filter is not null && !filter.IsMatch(name))
            {
                continue;
            }

            var caseOps = ReadOps(Path.Combine(folder, "model.onnx"));
            if (ops is not null && (caseOps.Count == 0 || !caseOps.All(ops.Contains)))
            {
                continue;
            }

            var dataSets = System.IO.Directory.GetDirectories(folder, "test_data_set_*").Order(StringComparer.Ordinal).ToList();
            cases.Add(new NodeTestCase(name, folder, caseOps, dataSets));
        }

        return cases;
    }

    /// <summary>
    /// Writes a case in the node-test layout (NAME/model.onnx, NAME/test_data_set_0/input_N.pb, output_N.pb), e.g. to keep a
    /// model and inputs where two engines disagree as a regression case.
    /// </summary>
    public static NodeTestCase WriteCase(string directory, string name, Onnx.OnnxModel model, IReadOnlyList<Engines.Tensor> inputs, IReadOnlyList<Engines.Tensor> outputs)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(outputs);
        var folder = Path.Combine(directory, name);
        var data = Path.Combine(folder, "test_data_set_0");
        System.IO.Directory.CreateDirectory(data);
        model.Save(Path.Combine(folder, "model.onnx"));
        var inputSpecs = model.Inputs;
        var outputSpecs = model.Outputs;
        for (var i = 0; i < inputs.Count; i++)
        {
            File.WriteAllBytes(Path.Combine(data, $"input_{i}.pb"), Onnx.TensorProtos.FromTensor(inputs[i], i < inputSpecs.Count ? inputSpecs[i].Name : string.Empty).ToByteArray());
        }

        for (var i = 0; i < outputs.Count; i++)
        {
            File.WriteAllBytes(Path.Combine(data, $"output_{i}.pb"), Onnx.TensorProtos.FromTensor(outputs[i], i < outputSpecs.Count ? outputSpecs[i].Name : string.Empty).ToByteArray());
        }

        return new NodeTestCase(name, folder, ReadOps(Path.Combine(folder, "model.onnx")), [data]);
    }

    /// <summary>Copies cases (their folders, whole) under <paramref name="target"/>; returns the bytes copied.</summary>
    public static long Copy(IEnumerable<NodeTestCase> cases, string target)
    {
        ArgumentNullException.ThrowIfNull(cases);
        long bytes = 0;
        try
        {
            foreach (var testCase in cases)
            {
                foreach (var file in System.IO.Directory.GetFiles(testCase.Directory, "*", SearchOption.AllDirectories))
                {
                    var destination = Path.Combine(target, testCase.Name, Path.GetRelativePath(testCase.Directory, file));
                    System.IO.Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
                    File.Copy(file, destination, overwrite: true);
                    bytes += new FileInfo(file).Length;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BatchwiseException($"Cannot copy node tests to '{target}': {e.Message}", "Choose a writable folder.", e);
        }

        return bytes;
    }

    /// <summary>The operator types in a model file (recursing into subgraphs), without validating it.</summary>
    internal static IReadOnlyList<string> ReadOps(string modelPath)
    {
        try
        {
            var proto = OnnxProto.ModelProto.Parser.ParseFrom(File.ReadAllBytes(modelPath));
            var ops = new SortedSet<string>(StringComparer.Ordinal);
            Collect(proto.Graph, ops);
            return ops.ToList();
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or IOException)
        {
            return [];
        }
    }

    private static void Collect(OnnxProto.GraphProto? graph, SortedSet<string> ops)
    {
        if (graph is null)
        {
            return;
        }

        foreach (var node in graph.Node)
        {
            ops.Add(string.IsNullOrEmpty(node.Domain) || node.Domain == "ai.onnx" ? node.OpType : $"{node.Domain}.{node.OpType}");
            foreach (var attribute in node.Attribute)
            {
                Collect(attribute.G, ops);
                foreach (var g in attribute.Graphs)
                {
                    Collect(g, ops);
                }
            }
        }
    }

    private static IEnumerable<string> SafeDirectories(string root, string pattern)
    {
        try
        {
            return System.IO.Directory.GetDirectories(root, pattern);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }
}
