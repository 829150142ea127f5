/**
 * ComfyUI's DPM-Solver++ family, DDPM, LCM and TCD as k-diffusion samplers (eps/VP models: alpha_t = 1 in
 * k-diffusion's scaling, lambda = -log sigma). Same contract as k-samplers.ts.
 *
 * Example:
 *   const out = await sampleDpmpp2mSde({ denoiser, x, sigmas: calculateSigmas(ms, 'karras', 20), noise: gen, shape });
 */
import { ancestralStep, prepare, type KSamplerFn } from './k-samplers.js';
import { lincomb, toD } from './vec.js';

/** dpmpp_2s_ancestral: DPM-Solver++(2S) down to sigma_down, then noise * sigma_up while sigma_next > 0. */
export const sampleDpmpp2sAncestral: KSamplerFn = async (a) => {
  const { sigmas, report, D, draw, sNoise } = prepare(a);
  const eta = a.eta ?? 1;
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i];
    const den = await D(x, s);
    const { down, up } = ancestralStep(s, sigmas[i + 1], eta);
    await report(i, x, den);
    if (down === 0)
      x = lincomb([
        [x, 1],
        [toD(x, den, s), down - s],
      ]);
    else {
      const h = Math.log(s) - Math.log(down); // t_next - t with t = -log sigma
      const sMid = Math.exp(-(-Math.log(s) + h / 2));
      const x2 = lincomb([
        [x, sMid / s],
        [den, -Math.expm1(-h / 2)],
      ]);
      const den2 = await D(x2, sMid);
      x = lincomb([
        [x, down / s],
        [den2, -Math.expm1(-h)],
      ]);
    }
    if (sigmas[i + 1] > 0)
      x = lincomb([
        [x, 1],
        [draw(), sNoise * up],
      ]);
  }
  return x;
};

/** dpmpp_sde: DPM-Solver++ (stochastic), r = 1/2; two noise draws per step (ComfyUI uses a Brownian tree there). */
export const sampleDpmppSde: KSamplerFn = async (a) => {
  const { sigmas, report, D, draw, sNoise } = prepare(a);
  const eta = a.eta ?? 1,
    r = 0.5,
    fac = 1 / (2 * r);
  const addNoise = eta > 0 && sNoise > 0;
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const den = await D(x, s);
    await report(i, x, den);
    if (sn === 0) {
      x = den;
      continue;
    }
    const ls = -Math.log(s),
      lt = -Math.log(sn);
    const h = lt - ls;
    const s1 = Math.exp(-(ls + r * h));
    // step 1, to sigma_s1
    let st = ancestralStep(s, s1, eta);
    let hh = -Math.log(st.down) - ls;
    let x2 = lincomb([
      [x, Math.exp(-hh)],
      [den, -Math.expm1(-hh)],
    ]);
    if (addNoise)
      x2 = lincomb([
        [x2, 1],
        [draw(), sNoise * st.up],
      ]);
    const den2 = await D(x2, s1);
    // step 2, to sigma_next
    st = ancestralStep(s, sn, eta);
    hh = -Math.log(st.down) - ls;
    x = lincomb([
      [x, Math.exp(-hh)],
      [den, -Math.expm1(-hh) * (1 - fac)],
      [den2, -Math.expm1(-hh) * fac],
    ]);
    if (addNoise)
      x = lincomb([
        [x, 1],
        [draw(), sNoise * st.up],
      ]);
  }
  return x;
};

/** dpmpp_2m: DPM-Solver++(2M), first-order on the first and last steps. */
export const sampleDpmpp2m: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  let x = a.x;
  let old: Float32Array | null = null;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const den = await D(x, s);
    await report(i, x, den);
    const h = -Math.log(sn) + Math.log(s); // Infinity on the last step: x = denoised
    const ratio = sn / s,
      c = -Math.expm1(-h);
    if (old === null || sn === 0)
      x = lincomb([
        [x, ratio],
        [den, c],
      ]);
    else {
      const hLast = -Math.log(s) + Math.log(sigmas[i - 1]);
      const rr = hLast / h;
      x = lincomb([
        [x, ratio],
        [den, c * (1 + 1 / (2 * rr))],
        [old, -c / (2 * rr)],
      ]);
    }
    old = den;
  }
  return x;
};

/** dpmpp_2m_sde (midpoint by default): DPM-Solver++(2M) SDE with noise sigma_next * sqrt(1 - e^{-2 h eta}). */
export const sampleDpmpp2mSde: KSamplerFn = async (a) => {
  const { sigmas, report, D, draw, sNoise } = prepare(a);
  const eta = a.eta ?? 1,
    solver = a.solverType ?? 'midpoint';
  let x = a.x;
  let old: Float32Array | null = null;
  let h = 0,
    hLast = 0;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const den = await D(x, s);
    await report(i, x, den);
    if (sn === 0) x = den;
    else {
      h = Math.log(s) - Math.log(sn);
      const hEta = h * (eta + 1);
      const c = -Math.expm1(-hEta);
      const terms: [Float32Array, number][] = [
        [x, (sn / s) * Math.exp(-h * eta)],
        [den, c],
      ];
      if (old !== null) {
        const r = hLast / h;
        const k = solver === 'heun' ? (c / -hEta + 1) * (1 / r) : 0.5 * c * (1 / r);
        terms.push([den, k], [old, -k]);
      }
      if (eta > 0 && sNoise > 0) terms.push([draw(), sn * Math.sqrt(-Math.expm1(-2 * h * eta)) * sNoise]);
      x = lincomb(terms);
    }
    old = den;
    hLast = h;
  }
  return x;
};

/** dpmpp_3m_sde: DPM-Solver++(3M) SDE (2M on the second step, first order on the first). */
export const sampleDpmpp3mSde: KSamplerFn = async (a) => {
  const { sigmas, report, D, draw, sNoise } = prepare(a);
  const eta = a.eta ?? 1;
  let x = a.x;
  let d1: Float32Array | null = null,
    d2: Float32Array | null = null;
  let h: number | null = null,
    h1: number | null = null,
    h2: number | null = null;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const den = await D(x, s);
    await report(i, x, den);
    if (sn === 0) x = den;
    else {
      h = Math.log(s) - Math.log(sn);
      const hEta = h * (eta + 1);
      const terms: [Float32Array, number][] = [
        [x, (sn / s) * Math.exp(-h * eta)],
        [den, -Math.expm1(-hEta)],
      ];
      const phi2 = Math.expm1(-hEta) / hEta + 1;
      if (h2 !== null && d1 && d2) {
        const r0 = h1! / h,
          r1 = h2 / h;
        // d1_0 = (den - d1)/r0, d1_1 = (d1 - d2)/r1; D1 = d1_0 + (d1_0 - d1_1) r0/(r0+r1); D2 = (d1_0 - d1_1)/(r0+r1)
        const phi3 = phi2 / hEta - 0.5;
        const a0 = 1 / r0,
          a1 = 1 / r1,
          q = r0 / (r0 + r1),
          w = 1 / (r0 + r1);
        // coefficients of den, d1, d2 in D1 and D2
        const D1 = [a0 * (1 + q), -a0 * (1 + q) - a1 * q, a1 * q];
        const D2 = [a0 * w, -a0 * w - a1 * w, a1 * w];
        terms.push(
          [den, phi2 * D1[0] - phi3 * D2[0]],
          [d1, phi2 * D1[1] - phi3 * D2[1]],
          [d2, phi2 * D1[2] - phi3 * D2[2]],
        );
      } else if (h1 !== null && d1) {
        const r = h1 / h;
        terms.push([den, phi2 / r], [d1, -phi2 / r]);
      }
      if (eta > 0 && sNoise > 0) terms.push([draw(), sn * Math.sqrt(-Math.expm1(-2 * h * eta)) * sNoise]);
      x = lincomb(terms);
    }
    d2 = d1;
    d1 = den;
    h2 = h1;
    h1 = h;
  }
  return x;
};

/** ddpm: the ancestral DDPM step in VP space (x / sqrt(1 + sigma^2)), rescaled back while sigma_next != 0. */
export const sampleDdpm: KSamplerFn = async (a) => {
  const { sigmas, report, D, draw } = prepare(a);
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const den = await D(x, s);
    await report(i, x, den);
    const ac = 1 / (s * s + 1),
      acPrev = 1 / (sn * sn + 1),
      alpha = ac / acPrev;
    const A = Math.sqrt(1 / alpha),
      B = (1 - alpha) / Math.sqrt(1 - ac),
      k0 = 1 / Math.sqrt(1 + s * s);
    const scale = sn !== 0 ? Math.sqrt(1 + sn * sn) : 1;
    // mu = A * (x k0 - B (x - den) / s)
    const terms: [Float32Array, number][] = [
      [x, scale * A * (k0 - B / s)],
      [den, (scale * A * B) / s],
    ];
    if (sn > 0) terms.push([draw(), scale * Math.sqrt(((1 - alpha) * (1 - acPrev)) / (1 - ac))]);
    x = lincomb(terms);
  }
  return x;
};

/** lcm: jump to denoised, then re-noise to sigma_next with fresh noise. */
export const sampleLcm: KSamplerFn = async (a) => {
  const { sigmas, report, D, draw } = prepare(a);
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const den = await D(x, sigmas[i]);
    await report(i, x, den);
    x =
      sigmas[i + 1] > 0
        ? lincomb([
            [den, 1],
            [draw(), sigmas[i + 1]],
          ])
        : den;
  }
  return x;
};
