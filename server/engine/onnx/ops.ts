/**
 * Typed ONNX operators (ai.onnx, opset 17 semantics). Each returns the output Value(s).
 * Example: const y = g.op.Conv(x, w, b, { pads: [1, 1, 1, 1], strides: [1, 1] });
 */
import type { Attrs, GraphBuilder, Value } from './graph.js';

type V = Value;
type Opt = Value | null | undefined;

export class Ops {
  constructor(private g: GraphBuilder) {}
  private one(op: string, inputs: Opt[], attrs: Attrs = {}): V {
    return this.g.node(op, inputs, attrs, 1)[0];
  }

  // elementwise
  Add(a: V, b: V): V {
    return this.one('Add', [a, b]);
  }
  Sub(a: V, b: V): V {
    return this.one('Sub', [a, b]);
  }
  Mul(a: V, b: V): V {
    return this.one('Mul', [a, b]);
  }
  Div(a: V, b: V): V {
    return this.one('Div', [a, b]);
  }
  Pow(a: V, b: V): V {
    return this.one('Pow', [a, b]);
  }
  Neg(a: V): V {
    return this.one('Neg', [a]);
  }
  Sqrt(a: V): V {
    return this.one('Sqrt', [a]);
  }
  Exp(a: V): V {
    return this.one('Exp', [a]);
  }
  Sin(a: V): V {
    return this.one('Sin', [a]);
  }
  Cos(a: V): V {
    return this.one('Cos', [a]);
  }
  Erf(a: V): V {
    return this.one('Erf', [a]);
  }
  Tanh(a: V): V {
    return this.one('Tanh', [a]);
  }
  Sigmoid(a: V): V {
    return this.one('Sigmoid', [a]);
  }
  Relu(a: V): V {
    return this.one('Relu', [a]);
  }
  Equal(a: V, b: V): V {
    return this.one('Equal', [a, b]);
  }
  Less(a: V, b: V): V {
    return this.one('Less', [a, b]);
  }
  Where(cond: V, a: V, b: V): V {
    return this.one('Where', [cond, a, b]);
  }
  Identity(a: V): V {
    return this.one('Identity', [a]);
  }
  Cast(a: V, attrs: { to: number }): V {
    return this.one('Cast', [a], attrs);
  }

  // linear algebra / conv / norms
  MatMul(a: V, b: V): V {
    return this.one('MatMul', [a, b]);
  }
  Gemm(a: V, b: V, c?: Opt, attrs: { alpha?: number; beta?: number; transA?: number; transB?: number } = {}): V {
    return this.one('Gemm', [a, b, c], attrs);
  }
  Conv(
    x: V,
    w: V,
    b?: Opt,
    attrs: { pads?: number[]; strides?: number[]; dilations?: number[]; group?: number; kernel_shape?: number[] } = {},
  ): V {
    return this.one('Conv', [x, w, b], attrs);
  }
  LayerNormalization(x: V, scale: V, bias?: Opt, attrs: { axis?: number; epsilon?: number } = {}): V {
    return this.one('LayerNormalization', [x, scale, bias], attrs);
  }
  InstanceNormalization(x: V, scale: V, bias: V, attrs: { epsilon?: number } = {}): V {
    return this.one('InstanceNormalization', [x, scale, bias], attrs);
  }
  Softmax(x: V, attrs: { axis?: number } = {}): V {
    return this.one('Softmax', [x], attrs);
  }

  // shape manipulation (opset 13+ forms: axes/shape/splits as inputs)
  Reshape(x: V, shape: V): V {
    return this.one('Reshape', [x, shape]);
  }
  Transpose(x: V, attrs: { perm: number[] }): V {
    return this.one('Transpose', [x], attrs);
  }
  Concat(xs: V[], attrs: { axis: number }): V {
    return this.one('Concat', xs, attrs);
  }
  Split(x: V, split: Opt, attrs: { axis?: number }, nOutputs: number): V[] {
    return this.g.node('Split', [x, split], attrs, nOutputs);
  }
  Slice(x: V, starts: V, ends: V, axes?: Opt, steps?: Opt): V {
    return this.one('Slice', [x, starts, ends, axes, steps]);
  }
  Gather(x: V, indices: V, attrs: { axis?: number } = {}): V {
    return this.one('Gather', [x, indices], attrs);
  }
  GatherElements(x: V, indices: V, attrs: { axis?: number } = {}): V {
    return this.one('GatherElements', [x, indices], attrs);
  }
  Shape(x: V, attrs: { start?: number; end?: number } = {}): V {
    return this.one('Shape', [x], attrs);
  }
  Unsqueeze(x: V, axes: V): V {
    return this.one('Unsqueeze', [x, axes]);
  }
  Squeeze(x: V, axes?: Opt): V {
    return this.one('Squeeze', [x, axes]);
  }
  Expand(x: V, shape: V): V {
    return this.one('Expand', [x, shape]);
  }
  Flatten(x: V, attrs: { axis?: number } = {}): V {
    return this.one('Flatten', [x], attrs);
  }
  Range(start: V, limit: V, delta: V): V {
    return this.one('Range', [start, limit, delta]);
  }
  ConstantOfShape(shape: V, attrs: Attrs = {}): V {
    return this.one('ConstantOfShape', [shape], attrs);
  }
  Trilu(x: V, k?: Opt, attrs: { upper?: number } = {}): V {
    return this.one('Trilu', [x, k], attrs);
  }
  ArgMax(x: V, attrs: { axis?: number; keepdims?: number; select_last_index?: number } = {}): V {
    return this.one('ArgMax', [x], attrs);
  }
  ReduceMean(x: V, attrs: { axes?: number[]; keepdims?: number } = {}): V {
    return this.one('ReduceMean', [x], attrs);
  }
  Pad(x: V, pads: V, value?: Opt, attrs: { mode?: string } = {}): V {
    return this.one('Pad', [x, pads, value], attrs);
  }
  /** Resize (opset 13+): roi empty, scales given; use for nearest upsampling */
  Resize(
    x: V,
    scales: V,
    attrs: { mode?: string; coordinate_transformation_mode?: string; nearest_mode?: string } = {},
  ): V {
    return this.one('Resize', [x, null, scales], attrs);
  }
}
