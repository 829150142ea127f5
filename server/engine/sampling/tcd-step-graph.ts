/**
 * One TCDScheduler step (with classifier-free guidance) as a tiny ONNX graph, so a sampling loop can run it where
 * the UNet runs and keep the latent there between steps (runtime/tcd-loop.ts). It computes what tcdStep computes,
 * in the same operation order, in float32:
 *   eps   = neg + cfg * (pos - neg)                     (guided; else eps = pos)
 *   x0    = (x - sqrt_beta * eps) / sqrt_alpha          (epsilon; v_prediction: see below)
 *   pns   = sqrt_alpha_s * x0 + sqrt_beta_s * eps       (pred_noised_sample)
 *   prev  = keep * pns + noise_scale * noise            (keep = 1, noise_scale = 0 on steps without noise)
 * The per-step numbers come in as [1]-shaped inputs from tcdStepScalars, so one graph serves every step.
 * Example:
 *   const bytes = serializeModel(buildTcdStepGraph({ guided: true, predictionType: 'epsilon' }));
 *   // feeds: x, pos, neg, noise, sqrt_alpha, sqrt_beta, sqrt_alpha_s, sqrt_beta_s, keep, noise_scale, cfg -> prev, pns
 */
import { GraphBuilder } from '../onnx/graph.js';

export interface TcdStepGraphOptions {
  /** two model outputs combined with cfg (true) or the positive one alone */
  guided: boolean;
  predictionType: 'epsilon' | 'v_prediction';
}

export const TCD_STEP_SCALARS = [
  'sqrt_alpha',
  'sqrt_beta',
  'sqrt_alpha_s',
  'sqrt_beta_s',
  'keep',
  'noise_scale',
  'cfg',
] as const;

export function buildTcdStepGraph(o: TcdStepGraphOptions): GraphBuilder {
  const g = new GraphBuilder({ name: `tcd_step_${o.predictionType}${o.guided ? '_cfg' : ''}` });
  const latent = ['B', 'C', 'H', 'W'];
  const x = g.input('x', 'float32', latent);
  const pos = g.input('pos', 'float32', latent);
  const neg = o.guided ? g.input('neg', 'float32', latent) : null;
  const noise = g.input('noise', 'float32', latent);
  const s = Object.fromEntries(TCD_STEP_SCALARS.map((name) => [name, g.input(name, 'float32', [1])])) as Record<
    (typeof TCD_STEP_SCALARS)[number],
    ReturnType<GraphBuilder['input']>
  >;
  const { Add, Sub, Mul, Div } = {
    Add: g.op.Add.bind(g.op),
    Sub: g.op.Sub.bind(g.op),
    Mul: g.op.Mul.bind(g.op),
    Div: g.op.Div.bind(g.op),
  };
  const mo = neg ? Add(neg, Mul(s.cfg, Sub(pos, neg))) : pos;
  let x0, eps;
  if (o.predictionType === 'epsilon') {
    x0 = Div(Sub(x, Mul(s.sqrt_beta, mo)), s.sqrt_alpha);
    eps = mo;
  } else {
    x0 = Sub(Mul(s.sqrt_alpha, x), Mul(s.sqrt_beta, mo));
    eps = Add(Mul(s.sqrt_alpha, mo), Mul(s.sqrt_beta, x));
  }
  const pns = Add(Mul(s.sqrt_alpha_s, x0), Mul(s.sqrt_beta_s, eps));
  const prev = Add(Mul(s.keep, pns), Mul(s.noise_scale, noise));
  g.output(prev, 'prev', 'float32', latent);
  g.output(pns, 'pns', 'float32', latent);
  return g;
}
