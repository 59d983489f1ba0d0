using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Tests.Interop;

public sealed class LibrarySearchTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "bw-libsearch-" + Guid.NewGuid().ToString("N"));

    public LibrarySearchTests() => Directory.CreateDirectory(_root);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Fake(string relativeDir, string file)
    {
        var dir = Path.Combine(_root, relativeDir);
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, file);
        File.WriteAllText(path, "not a real library");
        return path;
    }

    private LibrarySearch Search(Dictionary<string, string> env) => new(name => env.GetValueOrDefault(name), _root);

    [Fact]
    public void Every_rule_is_searched_in_the_documented_order()
    {
        var names = new[] { "libcublasLt.so.13", "libcublasLt.so.12" };
        var site = Fake("usr/local/lib/python3.12/dist-packages/nvidia/cublas/lib", "libcublasLt.so.12");
        var system = Fake("usr/lib/x86_64-linux-gnu", "libcublasLt.so.12");
        var lib64 = Fake("usr/local/cuda-12.4/lib64", "libcublasLt.so.12");
        var targets = Fake("usr/local/cuda-13.0/targets/x86_64-linux/lib", "libcublasLt.so.13");
        var cudaHome = Fake("opt/cuda-home/lib64", "libcublasLt.so.13");
        var ld = Fake("opt/ld", "libcublasLt.so.12");
        var own = Fake("opt/own", "libcublasLt.so.13");
        var env = new Dictionary<string, string>
        {
            ["BATCHWISE_CUDA_PATH"] = Path.Combine(_root, "opt/own"),
            ["LD_LIBRARY_PATH"] = Path.Combine(_root, "opt/ld") + ":" + Path.Combine(_root, "missing"),
            ["CUDA_HOME"] = Path.Combine(_root, "opt/cuda-home"),
        };

        var found = Search(env).Candidates(names).ToList();

        Assert.Equal([own, ld, cudaHome, targets, lib64, system, site], found);
    }

    [Fact]
    public void Newer_versioned_name_wins_within_one_folder_and_newer_toolkits_come_first()
    {
        var old = Fake("usr/local/cuda-12.4/targets/x86_64-linux/lib", "libnvrtc.so.12");
        var v13 = Fake("usr/local/cuda-13.0/targets/x86_64-linux/lib", "libnvrtc.so.13");
        var v12InSame = Fake("usr/local/cuda-13.0/targets/x86_64-linux/lib", "libnvrtc.so.12");

        var found = Search([]).Candidates(["libnvrtc.so.13", "libnvrtc.so.12"]).ToList();

        Assert.Equal([v13, v12InSame, old], found);
    }

    [Fact]
    public void Cuda_path_accepts_a_toolkit_root_and_home_site_packages_are_searched()
    {
        var root = Fake("toolkit/targets/sbsa-linux/lib", "libcudnn.so.9");
        var home = Fake("home/me/.local/lib/python3.11/site-packages/nvidia/cudnn/lib", "libcudnn.so.9");
        var env = new Dictionary<string, string> { ["CUDA_PATH"] = Path.Combine(_root, "toolkit"), ["HOME"] = Path.Combine(_root, "home/me") };

        var found = Search(env).Candidates(["libcudnn.so.9"]).ToList();

        Assert.Equal([root, home], found);
    }

    [Fact]
    public void Nothing_found_yields_no_candidates_but_lists_the_folders_searched()
    {
        var search = Search(new Dictionary<string, string> { ["LD_LIBRARY_PATH"] = "/nowhere" });

        Assert.Empty(search.Candidates(["libcuda.so.1"]));
        var rules = search.Directories().Select(d => d.Rule).Distinct().ToList();
        Assert.Equal("LD_LIBRARY_PATH", rules[0]);
        Assert.Contains("system", rules);
    }
}
