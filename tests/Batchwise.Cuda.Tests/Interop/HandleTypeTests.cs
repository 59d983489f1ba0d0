using System.Reflection;
using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Tests.Interop;

/// <summary>One sealed SafeHandle type per native object kind, so a descriptor of one kind cannot be passed for another.</summary>
public sealed class HandleTypeTests
{
    private static readonly Type[] HandleTypes = [.. typeof(NativeHandle).Assembly.GetTypes().Where(t => t.IsSubclassOf(typeof(NativeHandle)))];

    [Fact]
    public void Every_native_handle_type_is_sealed_and_owns_one_kind_of_object()
    {
        Assert.Contains(typeof(CudnnTensorDescriptor), HandleTypes);
        Assert.All(HandleTypes, t =>
        {
            Assert.True(t.IsSealed, $"{t.Name} is not sealed");
            var kindMembers = t.GetMembers(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
                .Where(m => (m as PropertyInfo)?.PropertyType.IsEnum == true || (m as FieldInfo)?.FieldType.IsEnum == true)
                .Select(m => m.Name);
            Assert.Empty(kindMembers);
        });
    }

    [Fact]
    public void Library_calls_take_each_descriptor_as_its_own_type()
    {
        var matmul = typeof(CublasLt).GetMethod(nameof(CublasLt.Matmul))!.GetParameters().ToDictionary(p => p.Name!, p => p.ParameterType);
        Assert.Equal(typeof(CublasLtHandle), matmul["handle"]);
        Assert.Equal(typeof(CublasLtMatmulDescriptor), matmul["desc"]);
        Assert.All(new[] { "aDesc", "bDesc", "cDesc", "dDesc" }, n => Assert.Equal(typeof(CublasLtMatrixLayout), matmul[n]));

        var conv = typeof(Cudnn).GetMethod(nameof(Cudnn.ConvolutionBiasActivationForward))!.GetParameters().ToDictionary(p => p.Name!, p => p.ParameterType);
        Assert.Equal(typeof(CudnnTensorDescriptor), conv["x"]);
        Assert.Equal(typeof(CudnnFilterDescriptor), conv["w"]);
        Assert.Equal(typeof(CudnnConvolutionDescriptor), conv["conv"]);
        Assert.Equal(typeof(CudnnActivationDescriptor), conv["activation"]);
        Assert.Equal(typeof(CudnnTensorDescriptor), conv["y"]);
    }
}
