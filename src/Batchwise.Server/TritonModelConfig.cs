using System.Text.Json.Nodes;
using Batchwise.Onnx;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Proto = Batchwise.Server.Protocol;

namespace Batchwise.Server;

/// <summary>
/// A served model's configuration as Triton reports it (model_config.proto's ModelConfig): one message answers
/// gRPC ModelConfig and, written as JSON with the proto's field names, HTTP <c>GET /v2/models/NAME/config</c>.
/// </summary>
internal static class TritonModelConfig
{
    /// <summary>Triton's backend name for ONNX Runtime, whatever engine runs the model here.</summary>
    public const string Backend = "onnxruntime";

    /// <summary>Triton's platform name for ONNX models.</summary>
    public const string Platform = "onnxruntime_onnx";

    /// <summary>The parameter that names the Batchwise engine actually running the model (ort, cuda).</summary>
    public const string EngineParameter = "batchwise_engine";

    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));

    /// <summary>The model's configuration message.</summary>
    public static Proto.ModelConfig Describe(ServedModel model)
    {
        var config = new Proto.ModelConfig
        {
            Name = model.Name,
            Platform = Platform,
            Backend = Backend,
            MaxBatchSize = model.MaxBatchSize,
        };
        var skip = model.MaxBatchSize > 0 ? 1 : 0;
        foreach (var s in model.Inputs)
        {
            var input = new Proto.ModelInput { Name = s.Name, DataType = DataTypeOf(s.ElementType) };
            input.Dims.AddRange(ServedModel.ProtocolShape(s).Skip(skip));
            config.Input.Add(input);
        }

        foreach (var s in model.Outputs)
        {
            var output = new Proto.ModelOutput { Name = s.Name, DataType = DataTypeOf(s.ElementType) };
            output.Dims.AddRange(ServedModel.ProtocolShape(s).Skip(skip));
            output.LabelFilename = model.LabelFile ?? string.Empty;
            config.Output.Add(output);
        }

        if (model.Config.DynamicBatching is { } d)
        {
            var batching = new Proto.ModelDynamicBatching
            {
                MaxQueueDelayMicroseconds = (ulong)Math.Max(0, d.MaxQueueDelayMicroseconds),
                PriorityLevels = (ulong)model.Batcher.PriorityLevels,
                DefaultPriorityLevel = (ulong)model.Batcher.ResolvedDefaultPriority,
                DefaultQueuePolicy = new Proto.ModelQueuePolicy
                {
                    DefaultTimeoutMicroseconds = (ulong)Math.Max(0, d.DefaultTimeoutMicroseconds),
                    AllowTimeoutOverride = true,
                    MaxQueueSize = (uint)model.Batcher.MaxQueueSize,
                },
            };
            batching.PreferredBatchSize.AddRange(model.Batcher.PreferredBatchSizes);
            config.DynamicBatching = batching;
        }

        config.InstanceGroup.Add(new Proto.ModelInstanceGroup
        {
            Name = model.Name,
            Count = model.Batcher.InstanceCount,
            Kind = model.Engine == "ort" ? Proto.ModelInstanceGroup.Types.Kind.Cpu : Proto.ModelInstanceGroup.Types.Kind.Gpu,
        });
        config.DefaultModelFilename = "model.onnx";
        config.Parameters.Add(EngineParameter, new Proto.ModelParameter { StringValue = model.Engine });
        config.Parameters.Add("batchwise_precision", new Proto.ModelParameter { StringValue = model.Config.Precision });
        if (string.Equals(model.Config.Precision, "int8", StringComparison.OrdinalIgnoreCase))
        {
            // How the float model was quantized as it loaded: "int8 (QDQ, calibrated on random:8, minmax)".
            config.Parameters.Add("batchwise_int8", new Proto.ModelParameter { StringValue = model.Config.ToEngineOptions(model.MaxBatchSize, model.Folder).Calibration.Describe() });
        }

        return config;
    }

    /// <summary>The configuration as Triton's HTTP endpoint writes it: proto field names, 64-bit integers as JSON numbers.</summary>
    public static JsonNode ToJson(IMessage message)
    {
        var node = JsonNode.Parse(Formatter.Format(message))!;
        NumbersForInt64(node, message.Descriptor);
        return node;
    }

    /// <summary>Triton's config datatype for an element type (BYTES is TYPE_STRING there).</summary>
    public static Proto.DataType DataTypeOf(ElementType type) => type switch
    {
        ElementType.String => Proto.DataType.TypeString,
        _ => (Proto.DataType)(Proto.ModelConfigReflection.Descriptor.FindTypeByName<EnumDescriptor>("DataType").FindValueByName("TYPE_" + type.ProtocolName())?.Number ?? 0),
    };

    // Proto3 JSON writes 64-bit integers as strings; Triton converts them back to numbers for its HTTP answers.
    private static void NumbersForInt64(JsonNode? node, MessageDescriptor descriptor)
    {
        if (node is not JsonObject obj)
        {
            return;
        }

        foreach (var field in descriptor.Fields.InFieldNumberOrder())
        {
            if (!obj.TryGetPropertyValue(field.Name, out var value) || value is null)
            {
                continue;
            }

            if (field.IsMap)
            {
                var valueField = field.MessageType.FindFieldByNumber(2);
                if (valueField.FieldType == FieldType.Message && value is JsonObject map)
                {
                    foreach (var entry in map)
                    {
                        NumbersForInt64(entry.Value, valueField.MessageType);
                    }
                }

                continue;
            }

            if (field.FieldType == FieldType.Message)
            {
                if (value is JsonArray items)
                {
                    foreach (var item in items)
                    {
                        NumbersForInt64(item, field.MessageType);
                    }
                }
                else
                {
                    NumbersForInt64(value, field.MessageType);
                }

                continue;
            }

            if (field.FieldType is FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64)
            {
                obj[field.Name] = Convert(value, v => JsonValue.Create(long.Parse(v, System.Globalization.CultureInfo.InvariantCulture)));
            }
            else if (field.FieldType is FieldType.UInt64 or FieldType.Fixed64)
            {
                obj[field.Name] = Convert(value, v => JsonValue.Create(ulong.Parse(v, System.Globalization.CultureInfo.InvariantCulture)));
            }
        }
    }

    private static JsonNode Convert(JsonNode value, Func<string, JsonNode> number)
    {
        if (value is JsonArray items)
        {
            return new JsonArray(items.Select(i => (JsonNode?)number(i!.GetValue<string>())).ToArray());
        }

        return number(value.GetValue<string>());
    }
}
