// The seed rule of the export's `generate` signature, in JavaScript (the one copy of it here):
//   z = tf.random.stateless_normal([z_dim], seed=[seed, 0])   (as_introvae_tf.serving.signatures)
// on TensorFlow's CPU kernels: StatelessRandomGetKeyCounter (the seed scrambled by one Philox
// call) then StatelessRandomNormalV2 with Philox-4x32-10 and the Box-Muller transform in float32.
// tests/test_web.py runs this file with node and compares it with `seeds_to_z_numpy`
// (agreement to one float32 rounding of log/sin/cos, ~1e-7 relative).
// A classic script (no module): in the page it defines `seedsToZ` and `parseSeed` on the
// window; under node `require` returns them.
(function (root) {
  "use strict";
  // The rule as model_card.json states it (`seeds_to_z`, = signatures.SEED_RULE; tested).
  const SEED_RULE = "z = tf.random.stateless_normal([z_dim], seed=[seed, 0]) for each int64 seed";
  const M0 = 0xd2511f53n;
  const M1 = 0xcd9e8d57n;
  const W0 = 0x9e3779b9;
  const W1 = 0xbb67ae85;
  const MASK32 = 0xffffffffn;
  const MASK64 = 0xffffffffffffffffn;
  const F32 = new Float32Array(1);
  const U32 = new Uint32Array(F32.buffer);

  function mulHiLo(m, x) {
    const p = m * BigInt(x);
    return [Number(p >> 32n) >>> 0, Number(p & MASK32) >>> 0];
  }

  // One Philox-4x32-10 block: 4 uint32 from counter (4 uint32) and key (2 uint32).
  function philox(counter, key) {
    let c = counter.slice();
    let k0 = key[0] >>> 0;
    let k1 = key[1] >>> 0;
    for (let round = 0; round < 10; round++) {
      const [hi0, lo0] = mulHiLo(M0, c[0]);
      const [hi1, lo1] = mulHiLo(M1, c[2]);
      c = [(hi1 ^ c[1] ^ k0) >>> 0, lo1, (hi0 ^ c[3] ^ k1) >>> 0, lo0];
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    return c;
  }

  function increment(counter) {
    for (let i = 0; i < 4; i++) {
      counter[i] = (counter[i] + 1) >>> 0;
      if (counter[i] !== 0) return;
    }
  }

  // uint32 -> float32 in [0, 1): 23 random mantissa bits under exponent 127, minus 1.
  function uint32ToFloat(x) {
    U32[0] = (127 << 23) | (x & 0x7fffff);
    return Math.fround(F32[0] - 1);
  }

  const f = Math.fround;
  const TWO_PI = 2 * Math.PI; // double, as `2.0f * M_PI` is in TensorFlow's C++

  function boxMuller(x0, x1) {
    let u1 = uint32ToFloat(x0);
    if (u1 < f(1.0e-7)) u1 = f(1.0e-7);
    const v1 = f(TWO_PI * uint32ToFloat(x1));
    const u2 = f(Math.sqrt(f(f(-2) * f(Math.log(u1)))));
    return [f(f(Math.sin(v1)) * u2), f(f(Math.cos(v1)) * u2)];
  }

  /**
   * A seed as the int64 `generate` takes: a JavaScript integer or a string of decimal digits.
   * Returns a BigInt in [-2^63, 2^63). Throws RangeError naming the value otherwise.
   */
  function parseSeed(value) {
    const text = String(value).trim();
    if (!/^[+-]?\d+$/.test(text)) {
      throw new RangeError(`a seed is an integer (int64); got "${value}"`);
    }
    const seed = BigInt(text);
    if (seed < -(1n << 63n) || seed >= 1n << 63n) {
      throw new RangeError(`a seed is an int64, in [-2^63, 2^63); got ${text}`);
    }
    return seed;
  }

  /**
   * The latent code of one seed: Float32Array(zDim), equal to row i of `generate`'s z for
   * seeds[i] = seed. `seed`: number, BigInt or decimal string (int64); `zDim`: integer >= 1.
   * Throws RangeError for a seed outside int64 or a bad zDim.
   */
  function seedToZ(seed, zDim) {
    if (!Number.isInteger(zDim) || zDim < 1) {
      throw new RangeError(`z_dim must be an integer >= 1; got ${zDim}`);
    }
    const s = BigInt.asUintN(64, typeof seed === "bigint" ? seed : parseSeed(seed)) & MASK64;
    // StatelessRandomGetKeyCounter: seed = [s, 0] scrambled by one Philox call.
    const mix = philox(
      [Number(s & MASK32), Number(s >> 32n), 0, 0],
      [0x3ec8f720, 0x02461e29]
    );
    const key = [mix[0], mix[1]];
    const counter = [0, 0, mix[2], mix[3]];
    const z = new Float32Array(zDim);
    for (let i = 0; i < zDim; i += 4) {
      const bits = philox(counter, key);
      increment(counter);
      const a = boxMuller(bits[0], bits[1]);
      const b = boxMuller(bits[2], bits[3]);
      const group = [a[0], a[1], b[0], b[1]];
      for (let j = 0; j < 4 && i + j < zDim; j++) z[i + j] = group[j];
    }
    return z;
  }

  /** Latent codes of several seeds: Float32Array(seeds.length * zDim), row-major. */
  function seedsToZ(seeds, zDim) {
    const out = new Float32Array(seeds.length * zDim);
    seeds.forEach((seed, i) => out.set(seedToZ(seed, zDim), i * zDim));
    return out;
  }

  const api = { SEED_RULE, parseSeed, seedToZ, seedsToZ };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else Object.assign(root, api);
})(typeof globalThis !== "undefined" ? globalThis : this);
