/**
 * A small builder for ONNX models over `onnx-proto`'s generated protobuf types.
 *
 * Weights go to an external data file beside the model (model.onnx.data), written as they are added, so a multi-GB
 * model never exists as one protobuf buffer (protobuf messages are limited to 2 GB) and onnxruntime can map the file
 * instead of copying it. Large tensors start on a page boundary for that reason.
 */
import fs from 'node:fs';
import path from 'node:path';
import onnxPkg from 'onnx-proto';

const { onnx } = onnxPkg;

export type ElemType = 'float32' | 'float16' | 'int32' | 'int64' | 'uint8';
const ELEM: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
  uint8: onnx.TensorProto.DataType.UINT8,
};

export type Dim = number | string;
export type AttrValue = number | { float: number } | number[] | string;

const PAGE = 4096;
const SMALL = 64 * 1024;

interface NodeSpec {
  opType: string;
  domain: string;
  name: string;
  input: string[];
  output: string[];
  attribute: object[];
}

export class OnnxGraphBuilder {
  private readonly nodes: NodeSpec[] = [];
  private readonly inputs: object[] = [];
  private readonly outputs: object[] = [];
  private readonly initializers: object[] = [];
  private readonly dataFd: number;
  private dataOffset = 0;
  private counter = 0;
  readonly dataFileName: string;

  /** `modelPath` is where build() writes the model; weights stream to `${modelPath}.data` from now on. */
  constructor(private readonly modelPath: string) {
    this.dataFileName = path.basename(modelPath) + '.data';
    this.dataFd = fs.openSync(modelPath + '.data', 'w');
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  output(name: string, type: ElemType, dims: Dim[]): string {
    this.outputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** A fresh tensor name with a readable stem. */
  fresh(stem: string): string {
    return `${stem}_${this.counter++}`;
  }

  /**
   * Adds a node. `outputs` may be a count (names are generated) or explicit names; '' skips an optional slot.
   * Returns the output names.
   */
  node(opType: string, inputs: string[], outputs: number | string[] = 1, attrs: Record<string, AttrValue> = {}, domain = ''): string[] {
    const outNames = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(opType)) : outputs;
    this.nodes.push({
      opType,
      domain,
      name: this.fresh(`n_${opType}`),
      input: inputs,
      output: outNames,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outNames;
  }

  /** Shorthand for single-output nodes. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    return this.node(opType, inputs, 1, attrs, domain)[0]!;
  }

  /** A constant tensor. Small ones (shapes, scalars) stay inline; the rest go to the external data file. */
  constant(name: string, type: ElemType, dims: number[], data: ArrayBufferView): string {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const expected = dims.reduce((a, b) => a * b, 1) * elemBytes(type);
    if (bytes.byteLength !== expected) throw new Error(`initializer ${name}: ${bytes.byteLength} bytes for dims [${dims}] of ${type}`);
    if (bytes.byteLength < 1024) {
      this.initializers.push({ name, dataType: ELEM[type], dims, rawData: bytes.slice() });
      return name;
    }
    const align = bytes.byteLength >= SMALL ? PAGE : 64;
    const offset = Math.ceil(this.dataOffset / align) * align;
    let written = 0;
    while (written < bytes.byteLength) written += fs.writeSync(this.dataFd, bytes, written, bytes.byteLength - written, offset + written);
    this.dataOffset = offset + bytes.byteLength;
    this.initializers.push({
      name,
      dataType: ELEM[type],
      dims,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: this.dataFileName },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(bytes.byteLength) },
      ],
    });
    return name;
  }

  int64s(values: number[]): string {
    return this.constant(this.fresh('const_i64'), 'int64', [values.length], BigInt64Array.from(values.map(BigInt)));
  }

  /** Writes model.onnx and closes the data file. */
  build(opsets: Record<string, number>, producer = 'mgd'): void {
    fs.closeSync(this.dataFd);
    const model = onnx.ModelProto.create({
      irVersion: 10,
      producerName: producer,
      opsetImport: Object.entries(opsets).map(([domain, version]) => ({ domain, version })),
      graph: { name: 'main', node: this.nodes, input: this.inputs, output: this.outputs, initializer: this.initializers },
    });
    fs.writeFileSync(this.modelPath, onnx.ModelProto.encode(model).finish());
  }

  /** Closes the data file without writing the model (on failure). */
  abandon(): void {
    try {
      fs.closeSync(this.dataFd);
    } catch {
      /* already closed */
    }
  }
}

export function elemBytes(type: ElemType): number {
  return type === 'float32' || type === 'int32' ? 4 : type === 'int64' ? 8 : type === 'float16' ? 2 : 1;
}

function valueInfo(name: string, type: ElemType, dims: Dim[]): object {
  return {
    name,
    type: { tensorType: { elemType: ELEM[type], shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
  };
}

function attribute(name: string, v: AttrValue): object {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') return { name, type: T.INT, i: v };
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  return { name, type: T.FLOAT, f: v.float };
}
