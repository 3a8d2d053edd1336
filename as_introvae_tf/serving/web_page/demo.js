// The web demo of an exported decoder: loads model_card.json and decoder.onnx from this folder
// with onnxruntime-web (WebAssembly, single-threaded, files beside this page) and draws
//   * a grid of samples for the seeds the user types (z from seeds.js = `generate`'s rule),
//   * sliders over the first latent dimensions of one sample, redrawn as they move,
//   * an interpolation strip between two seeds,
//   * for a 2-D model, the samples as a scatter plot over the data's range.
// Any failure (a missing or wrong file, a WebAssembly file that does not load, an input the
// page cannot handle) is shown on the page. For tests, `window.demo` holds the state and
// <body data-status> is "loading", "busy", "ready" or "error".
(function () {
  "use strict";
  const MAX_SLIDERS = 8;
  const MAX_GRID = 64; // images; a 2-D scatter takes up to MAX_POINTS seeds
  const MAX_POINTS = 4096;
  const CHUNK = 256; // codes per decoder call
  const SLIDER_RANGE = 3;

  const $ = (id) => document.getElementById(id);
  const demo = (window.demo = { status: "loading", card: null, grid: null, errors: [] });

  function setStatus(status, text) {
    demo.status = status;
    document.body.dataset.status = status;
    if (text !== undefined) $("status").textContent = text;
  }

  // A failure that stops the demo: the message, and what to do, in the red box.
  function fail(message) {
    demo.errors.push(message);
    const box = $("error");
    // (index.html may have named a script file that did not load already)
    box.textContent = box.textContent ? `${box.textContent}\n${message}` : message;
    box.hidden = false;
    $("demo").hidden = true;
    setStatus("error", "The demo cannot run:");
  }

  window.addEventListener("error", (e) => {
    if (demo.status !== "error") fail(`Unexpected error: ${e.message}`);
  });
  window.addEventListener("unhandledrejection", (e) => {
    if (demo.status !== "error") fail(`Unexpected error: ${describe(e.reason)}`);
  });

  function describe(error) {
    return error && error.message ? error.message : String(error);
  }

  // A problem with one input: shown beside that form; the rest of the page keeps working.
  function inputError(id, message) {
    const el = $(id);
    el.textContent = message || "";
    el.hidden = !message;
  }

  // === The model card ========================================================================

  function isInt(v) {
    return typeof v === "number" && Number.isInteger(v);
  }

  /** Checks model_card.json's fields the page uses; returns a list of problems (empty = ok). */
  function cardProblems(card) {
    if (card === null || typeof card !== "object" || Array.isArray(card)) {
      return ["it is not a JSON object"];
    }
    const problems = [];
    if (!isInt(card.z_dim) || card.z_dim < 1) {
      problems.push(`z_dim must be an integer >= 1; got ${JSON.stringify(card.z_dim)}`);
    }
    const shape = card.example_shape;
    const okShape =
      Array.isArray(shape) &&
      shape.every((d) => isInt(d) && d >= 1) &&
      ((shape.length === 1 && shape[0] === 2) ||
        (shape.length === 3 && [1, 3].includes(shape[2]) && shape[0] <= 1024 && shape[1] <= 1024));
    if (!okShape) {
      problems.push(
        "example_shape must be [2] (2-D points) or [H, W, C] with C 1 or 3 (images); got " +
          JSON.stringify(shape)
      );
    }
    if (card.seeds_to_z !== SEED_RULE) {
      problems.push(
        `seeds_to_z is ${JSON.stringify(card.seeds_to_z)}, but this page draws ` +
          `"${SEED_RULE}": its samples would not be the model's samples for these seeds`
      );
    }
    return problems;
  }

  async function loadCard() {
    let response;
    try {
      response = await fetch("model_card.json", { cache: "no-store" });
    } catch (e) {
      throw new Error(
        `Could not load model_card.json (${describe(e)}). Open this page over http from the ` +
          "folder the export wrote, e.g. python -m http.server -d EXPORT/VERSION/web, not as " +
          "a file."
      );
    }
    if (!response.ok) {
      throw new Error(
        `model_card.json was not found beside this page (HTTP ${response.status}). Serve the ` +
          "web/ folder that `python -m as_introvae_tf.export --web` wrote."
      );
    }
    let card;
    try {
      card = JSON.parse(await response.text());
    } catch (e) {
      throw new Error(`model_card.json is not valid JSON: ${describe(e)}`);
    }
    const problems = cardProblems(card);
    if (problems.length) {
      throw new Error("model_card.json cannot be used:\n  - " + problems.join("\n  - "));
    }
    return card;
  }

  // === The decoder ===========================================================================

  let session = null;
  let outputName = "images";
  let chain = Promise.resolve();

  async function loadDecoder() {
    if (typeof ort === "undefined") {
      throw new Error(
        "onnxruntime-web (ort.wasm.min.js) did not load: the file is missing from this " +
          "folder or is not onnxruntime-web. Write the page again with `python -m as_introvae_tf.serving.web " +
          "--version_dir=EXPORT/VERSION` after `npm ci` (tools/setup.sh)."
      );
    }
    ort.env.wasm.numThreads = 1; // no cross-origin isolation on a plain static server
    ort.env.wasm.wasmPaths = new URL("./", window.location.href).href;
    let bytes;
    try {
      const response = await fetch("decoder.onnx", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      bytes = new Uint8Array(await response.arrayBuffer());
    } catch (e) {
      throw new Error(
        `decoder.onnx could not be loaded from beside this page (${describe(e)}). Serve the ` +
          "web/ folder that `python -m as_introvae_tf.export --web` wrote."
      );
    }
    try {
      session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    } catch (e) {
      const text = describe(e).replace(/\.+$/, "");
      const hint = /wasm|backend|import|fetch|WebAssembly/i.test(text)
        ? " The onnxruntime-web WebAssembly files (ort-wasm-simd-threaded.wasm and .mjs) must " +
          "be in this folder and served over http."
        : " Is decoder.onnx the file the export wrote, undamaged?";
      throw new Error(`Could not load decoder.onnx with onnxruntime-web: ${text}.${hint}`);
    }
    if (!session.inputNames.includes("z")) {
      throw new Error(
        `decoder.onnx takes inputs ${JSON.stringify(session.inputNames)}, not "z": ` +
          "it is not a decoder written by as_introvae_tf.export."
      );
    }
    outputName = session.outputNames.includes("images") ? "images" : session.outputNames[0];
  }

  /** Decodes n codes (Float32Array n*z_dim) -> Float32Array n*prod(example_shape). Runs one
   *  call at a time (a session runs one request at a time) in chunks of CHUNK codes. */
  function decode(z, n) {
    const run = async () => {
      const zDim = demo.card.z_dim;
      const size = demo.exampleSize;
      const out = new Float32Array(n * size);
      for (let start = 0; start < n; start += CHUNK) {
        const m = Math.min(CHUNK, n - start);
        const feed = { z: new ort.Tensor("float32", z.slice(start * zDim, (start + m) * zDim), [m, zDim]) };
        const result = await session.run(feed);
        const images = result[outputName].data;
        if (images.length !== m * size) {
          throw new Error(
            `decoder.onnx returned ${images.length / m} values per sample, but model_card.json's ` +
              `example_shape ${JSON.stringify(demo.card.example_shape)} needs ${size}`
          );
        }
        out.set(images, start * size);
      }
      return out;
    };
    const result = chain.then(run);
    chain = result.catch(() => {});
    return result;
  }

  // Decodes one code of zeros and checks the output size: a card that does not fit the ONNX
  // file stops here with a message naming both.
  async function probeDecoder() {
    const zDim = demo.card.z_dim;
    try {
      await decode(new Float32Array(zDim), 1);
    } catch (e) {
      throw new Error(
        `decoder.onnx does not fit model_card.json (z_dim ${zDim}, example_shape ` +
          `${JSON.stringify(demo.card.example_shape)}): ${describe(e)}`
      );
    }
  }

  // === Drawing ================================================================================

  /** Float value in [0, 1] -> 8-bit canvas value: round(clip(v, 0, 1) * 255) (test_web.py). */
  function toByte(v) {
    return Math.round(Math.min(1, Math.max(0, v)) * 255);
  }

  /** A canvas of one image (float32 HWC at `offset` in `data`), at its native size. */
  function imageCanvas(data, offset, extraClass) {
    const [h, w, c] = demo.card.example_shape;
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    canvas.className = "sample" + (extraClass ? " " + extraClass : "");
    drawImage(canvas, data, offset);
    return canvas;
  }

  function drawImage(canvas, data, offset) {
    const [h, w, c] = demo.card.example_shape;
    const ctx = canvas.getContext("2d");
    const pixels = ctx.createImageData(w, h);
    for (let i = 0; i < h * w; i++) {
      const src = offset + i * c;
      const r = toByte(data[src]);
      pixels.data[4 * i] = r;
      pixels.data[4 * i + 1] = c === 3 ? toByte(data[src + 1]) : r;
      pixels.data[4 * i + 2] = c === 3 ? toByte(data[src + 2]) : r;
      pixels.data[4 * i + 3] = 255;
    }
    ctx.putImageData(pixels, 0, 0);
  }

  /** A scatter plot over [-R, R]^2: background points (grey), then marked points. */
  function scatterCanvas(points, marks, size) {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = size || 360;
    canvas.className = "scatter";
    drawScatter(canvas, points, marks);
    return canvas;
  }

  function drawScatter(canvas, points, marks) {
    const ctx = canvas.getContext("2d");
    const s = canvas.width;
    const r = demo.plotRange;
    const px = (x) => ((x + r) / (2 * r)) * s;
    const py = (y) => s - ((y + r) / (2 * r)) * s;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, s, s);
    ctx.strokeStyle = "#ddd";
    ctx.beginPath();
    ctx.moveTo(px(0), 0);
    ctx.lineTo(px(0), s);
    ctx.moveTo(0, py(0));
    ctx.lineTo(s, py(0));
    ctx.stroke();
    ctx.fillStyle = "#555";
    ctx.font = "11px sans-serif";
    ctx.fillText(`[-${r}, ${r}]²`, 4, 12);
    ctx.fillStyle = "rgba(30, 90, 200, 0.45)";
    for (let i = 0; i + 1 < points.length; i += 2) {
      ctx.fillRect(px(points[i]) - 1.5, py(points[i + 1]) - 1.5, 3, 3);
    }
    if (marks && marks.points.length) {
      ctx.strokeStyle = ctx.fillStyle = marks.color || "#d00";
      if (marks.line) {
        ctx.beginPath();
        for (let i = 0; i + 1 < marks.points.length; i += 2) {
          const f = i ? ctx.lineTo : ctx.moveTo;
          f.call(ctx, px(marks.points[i]), py(marks.points[i + 1]));
        }
        ctx.stroke();
      }
      ctx.lineWidth = 1.5;
      for (let i = 0; i + 1 < marks.points.length; i += 2) {
        ctx.beginPath();
        ctx.arc(px(marks.points[i]), py(marks.points[i + 1]), 5, 0, 2 * Math.PI);
        ctx.fill();
        ctx.strokeStyle = "#fff";
        ctx.stroke();
      }
    }
  }

  // === Samples =================================================================================

  function readSeed(id, what) {
    try {
      return parseSeed($(id).value);
    } catch (e) {
      throw new RangeError(`${what}: ${describe(e)}`);
    }
  }

  function readCount() {
    const limit = demo.is2d ? MAX_POINTS : MAX_GRID;
    const text = $("count").value.trim();
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < 1 || n > limit) {
      throw new RangeError(`count: a whole number from 1 to ${limit}; got "${text}"`);
    }
    return n;
  }

  async function drawSamples() {
    let first, n;
    try {
      first = readSeed("seed", "first seed");
      n = readCount();
      if (first + BigInt(n - 1) >= 1n << 63n) {
        throw new RangeError(`first seed: seeds ${first}..${first + BigInt(n - 1)} pass 2^63 - 1`);
      }
      inputError("seed-error", "");
    } catch (e) {
      inputError("seed-error", describe(e));
      return;
    }
    setStatus("busy", "Decoding…");
    const seeds = Array.from({ length: n }, (_, i) => first + BigInt(i));
    const images = await decode(seedsToZ(seeds, demo.card.z_dim), n);
    demo.grid = { seeds: seeds.map(String), images };
    const grid = $("grid");
    grid.replaceChildren();
    if (demo.is2d) {
      grid.appendChild(scatterCanvas(images, null, 420));
    } else {
      seeds.forEach((seed, i) => {
        const canvas = imageCanvas(images, i * demo.exampleSize);
        canvas.dataset.seed = String(seed);
        canvas.title = `seed ${seed}`;
        canvas.addEventListener("click", () => selectSliderSeed(seed));
        grid.appendChild(canvas);
      });
    }
    await selectSliderSeed(first);
    setStatus(demo.starting ? "busy" : "ready", `${n} samples of seeds ${first}..${first + BigInt(n - 1)}.`);
  }

  // === Sliders =================================================================================

  let sliderZ = null;
  let sliderPending = false;
  let sliderRunning = false;

  async function selectSliderSeed(seed) {
    const zDim = demo.card.z_dim;
    sliderZ = seedToZ(seed, zDim);
    demo.sliderSeed = String(seed);
    $("slider-seed").textContent = String(seed);
    for (const c of document.querySelectorAll("#grid canvas.sample")) {
      c.classList.toggle("selected", c.dataset.seed === String(seed));
    }
    const box = $("sliders");
    box.replaceChildren();
    const count = Math.min(MAX_SLIDERS, zDim);
    $("slider-count").textContent = String(count);
    for (let d = 0; d < count; d++) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      const value = document.createElement("span");
      input.type = "range";
      input.min = String(-SLIDER_RANGE);
      input.max = String(SLIDER_RANGE);
      input.step = "0.01";
      input.value = String(sliderZ[d]);
      input.id = `z${d}`;
      value.textContent = sliderZ[d].toFixed(2).padStart(6);
      input.addEventListener("input", () => {
        sliderZ[d] = Number(input.value);
        value.textContent = sliderZ[d].toFixed(2).padStart(6);
        requestSliderDraw();
      });
      label.append(`z[${d}] `, input, value);
      box.appendChild(label);
    }
    await drawSliderView();
  }

  // Redraws after each move; moves made while a decode runs are drawn once it ends.
  function requestSliderDraw() {
    sliderPending = true;
    if (!sliderRunning) drawSliderView();
  }

  async function drawSliderView() {
    sliderRunning = demo.sliderRunning = true;
    try {
      do {
        sliderPending = false;
        const z = Float32Array.from(sliderZ);
        const out = await decode(z, 1);
        demo.sliderImage = out;
        const view = $("slider-view");
        if (demo.is2d) {
          const background = demo.grid ? demo.grid.images : new Float32Array(0);
          view.replaceChildren(scatterCanvas(background, { points: out }, 260));
        } else {
          let canvas = view.querySelector("canvas");
          if (!canvas) {
            canvas = imageCanvas(out, 0);
            view.replaceChildren(canvas);
          } else {
            drawImage(canvas, out, 0);
          }
        }
        demo.sliderDraws = (demo.sliderDraws || 0) + 1;
      } while (sliderPending);
    } finally {
      sliderRunning = demo.sliderRunning = false;
    }
  }

  // === Interpolation ===========================================================================

  async function drawInterpolation() {
    let a, b, steps;
    try {
      a = readSeed("seed-a", "from seed");
      b = readSeed("seed-b", "to seed");
      const text = $("steps").value.trim();
      steps = Number(text);
      if (!/^\d+$/.test(text) || steps < 2 || steps > 32) {
        throw new RangeError(`steps: a whole number from 2 to 32; got "${text}"`);
      }
      inputError("interp-error", "");
    } catch (e) {
      inputError("interp-error", describe(e));
      return;
    }
    const zDim = demo.card.z_dim;
    const za = seedToZ(a, zDim);
    const zb = seedToZ(b, zDim);
    const z = new Float32Array(steps * zDim);
    for (let i = 0; i < steps; i++) {
      const t = i / (steps - 1);
      for (let d = 0; d < zDim; d++) z[i * zDim + d] = (1 - t) * za[d] + t * zb[d];
    }
    const out = await decode(z, steps);
    demo.interpolation = out;
    const strip = $("strip");
    strip.replaceChildren();
    if (demo.is2d) {
      const background = demo.grid ? demo.grid.images : new Float32Array(0);
      strip.appendChild(scatterCanvas(background, { points: out, line: true, color: "#e07000" }, 260));
    } else {
      for (let i = 0; i < steps; i++) strip.appendChild(imageCanvas(out, i * demo.exampleSize));
    }
  }

  // === Start ===================================================================================

  function guard(fn) {
    return (event) => {
      if (event) event.preventDefault();
      fn().catch((e) => fail(`Decoding failed: ${describe(e)}`));
    };
  }

  async function start() {
    demo.starting = true;
    if (typeof seedToZ === "undefined") {
      throw new Error("seeds.js (the seed rule) did not load: it is missing from this folder.");
    }
    const card = await loadCard();
    demo.card = card;
    demo.is2d = card.example_shape.length === 1;
    demo.exampleSize = card.example_shape.reduce((a, b) => a * b, 1);
    const range = Number(card.plot_range);
    demo.plotRange = Number.isFinite(range) && range > 0 ? range : 4;
    const name = [card.name, card.version].filter((x) => x !== undefined).join(" / version ");
    $("title").textContent = `${name || "Decoder"}: ${card.method || "?"} on ${card.dataset || "?"}`;
    $("model-info").textContent =
      `z_dim ${card.z_dim}, ${demo.is2d ? "2-D points" : "images " + card.example_shape.join("×")}` +
      (card.training_step !== undefined ? `, training step ${card.training_step}` : "") +
      (card.weights ? `, ${card.weights} weights` : "");
    if (demo.is2d) {
      $("count").value = "1000";
      $("samples-hint").textContent =
        "Seeds s, s+1, …: the points the SavedModel's generate signature returns for the " +
        `same seeds, over [-${demo.plotRange}, ${demo.plotRange}]² (the data's range).`;
    }
    setStatus("loading", "Loading decoder.onnx with onnxruntime-web…");
    await loadDecoder();
    await probeDecoder();
    const version = ort.env.versions ? ort.env.versions.web || ort.env.versions.common : "";
    $("footer").textContent =
      `decoder.onnx run in this browser by onnxruntime-web ${version || ""} (WebAssembly). ` +
      `Seed rule: ${SEED_RULE}.`;
    $("demo").hidden = false;
    $("seed-form").addEventListener("submit", guard(drawSamples));
    $("interp-form").addEventListener("submit", guard(drawInterpolation));
    await drawSamples();
    await drawInterpolation();
    demo.starting = false;
    if (demo.status !== "error") setStatus("ready");
  }

  start().catch((e) => fail(describe(e)));
})();
