// The NCA of `nca render MODEL out.html`, on the browser's GPU through WebGL2 fragment shaders.
// One step is the engine's step (src/ncacli/engine/nca.py): perception and update MLP in one pass
// per group of output layers, the fire mask from the counter-based hash of engine/counter_random.py,
// optional signal diffusion, then the alive mask. The state is a texture array, one RGBA32F layer
// (RGBA16F where float targets are missing) per 4 channels; weights are texels of one float texture
// laid out by src/ncacli/web/program.py.
// A classifier's page (task "classify", the Distill self-classifying digits) reads its condition per cell
// from an input image the user draws (one RGBA32F layer per 4 input channels), keeps alive the cells where
// the input's first channel exceeds the threshold, and shows each living cell in its class's colour. A
// translation model's page (task "translate", edges to pictures) reads its input the same way, the user drawing
// edges, and shows the picture the cells grow from the seed with the edges over it.
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("nca-data").textContent);
  const P = data.program;
  const canvas = document.getElementById("view");
  const errorBox = document.getElementById("error");

  function fail(message) {
    errorBox.hidden = false;
    errorBox.textContent = message;
    throw new Error(message);
  }

  const gl = canvas.getContext("webgl2", { antialias: false, depth: false, preserveDrawingBuffer: true });
  if (!gl) fail("This page needs WebGL2, which this browser does not offer.");
  // float32 state where the browser renders to it; `#float16` in the address asks for half floats
  const float32 = location.hash.includes("float16") ? null : gl.getExtension("EXT_color_buffer_float");
  const float16 = float32
    ? null
    : gl.getExtension("EXT_color_buffer_half_float") || gl.getExtension("EXT_color_buffer_float");
  if (!float32 && !float16) fail("This page needs float render targets (EXT_color_buffer_float).");
  const FORMAT = float32 ? gl.RGBA32F : gl.RGBA16F;
  const MAX_DRAW = Math.min(gl.getParameter(gl.MAX_DRAW_BUFFERS), gl.getParameter(gl.MAX_COLOR_ATTACHMENTS));

  const [H, W] = data.grid;
  const G = P.groups; // state layers
  const KG = P.condition_groups;
  const S = G + KG; // groups the perception sees
  // a classifier: the condition is the input image, one value per cell and input channel
  const IMAGE = data.input || null;
  const KI = IMAGE ? P.condition_channels : 0; // input channels
  const VOTES = IMAGE && IMAGE.view !== "picture"; // a classifier (its votes shown), not a translation model
  const INK = IMAGE && IMAGE.ink != null ? IMAGE.ink : 1; // what the pen writes; the eraser writes 1 − INK
  const NK = VOTES ? data.classes.length : 0; // class channels: the state's first NK
  const THRESHOLD = Math.fround(P.alive_threshold); // as float32 compares it

  // ---- the counter-based random numbers of engine/counter_random.py -------------------------------
  function mix(x) {
    x = x >>> 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x7feb352d) >>> 0;
    x ^= x >>> 15;
    x = Math.imul(x, 0x846ca68b) >>> 0;
    x ^= x >>> 16;
    return x >>> 0;
  }

  // ---- GL plumbing -----------------------------------------------------------------------------
  const vao = gl.createVertexArray();
  gl.bindVertexArray(vao);
  const VERTEX = `#version 300 es
void main() {
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`;

  function compile(type, source) {
    const s = gl.createShader(type);
    gl.shaderSource(s, source);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) {
      const numbered = source.split("\n").map((l, i) => `${i + 1}: ${l}`).join("\n");
      fail(`shader does not compile: ${gl.getShaderInfoLog(s)}\n${numbered}`);
    }
    return s;
  }

  function program(fragment) {
    const p = gl.createProgram();
    gl.attachShader(p, compile(gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(p, compile(gl.FRAGMENT_SHADER, fragment));
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) fail(`shader does not link: ${gl.getProgramInfoLog(p)}`);
    const uniforms = {};
    const n = gl.getProgramParameter(p, gl.ACTIVE_UNIFORMS);
    for (let i = 0; i < n; i++) {
      const name = gl.getActiveUniform(p, i).name.replace(/\[0\]$/, "");
      uniforms[name] = gl.getUniformLocation(p, name);
    }
    return { p, uniforms, source: fragment };
  }

  function layers(count) {
    const tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D_ARRAY, tex);
    gl.texStorage3D(gl.TEXTURE_2D_ARRAY, 1, FORMAT, W, H, count);
    for (const k of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D_ARRAY, k, gl.NEAREST);
    for (const k of [gl.TEXTURE_WRAP_S, gl.TEXTURE_WRAP_T]) gl.texParameteri(gl.TEXTURE_2D_ARRAY, k, gl.CLAMP_TO_EDGE);
    return { tex, count };
  }

  // weights: one RGBA32F texture, 1024 texels a row
  const ROW = 1024;
  const weightTex = (() => {
    const bytes = Uint8Array.from(atob(P.weights), (c) => c.charCodeAt(0));
    const rows = Math.max(1, Math.ceil(P.texels / ROW));
    const values = new Float32Array(rows * ROW * 4);
    values.set(new Float32Array(bytes.buffer, 0, P.texels * 4));
    const tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA32F, ROW, rows, 0, gl.RGBA, gl.FLOAT, values);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    return tex;
  })();

  // ---- shader generation ---------------------------------------------------------------------------
  const HEADER = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
precision highp sampler2DArray;
uniform sampler2D uW;
uniform ivec2 uSize;
vec4 Wt(int i) { return texelFetch(uW, ivec2(i & ${ROW - 1}, i >> ${Math.log2(ROW)}), 0); }
bool outside(ivec2 p) { return p.x < 0 || p.y < 0 || p.x >= uSize.x || p.y >= uSize.y; }
ivec2 wrap(ivec2 p) { return (p + uSize * 64) % uSize; }
`;
  const circular = P.padding === "circular";

  // fetch functions: what a source holds at cell p, zeros (or wrapped round) outside the grid
  function fetchers(sources) {
    let code = "";
    for (const name of sources) {
      code += `uniform sampler2DArray u_${name};\n`;
      if (name === "x" && KG) code += IMAGE ? "uniform sampler2DArray u_cond;\n" : `uniform vec4 uCond[${KG}];\n`;
      code += `vec4 f_${name}(ivec2 p, int g) {\n`;
      code += circular ? "  p = wrap(p);\n" : "  if (outside(p)) return vec4(0.0);\n";
      if (name === "x" && KG) {
        code += IMAGE
          ? `  if (g >= ${G}) return texelFetch(u_cond, ivec3(p, g - ${G}), 0);\n`
          : `  if (g >= ${G}) return uCond[g - ${G}];\n`;
      }
      code += `  return texelFetch(u_${name}, ivec3(p, g), 0);\n}\n`;
    }
    return code;
  }

  function sourceGroups(name) {
    if (name === "x") return S;
    return P.prepasses.find((p) => p.name === name).groups;
  }

  // the code of one block, accumulating into target[offset + o] for its `groups` outputs
  function blockCode(block, target, offset) {
    const O = block.groups;
    let c = `  for (int o = 0; o < ${O}; o++) ${target}[${offset} + o] = ${block.bias == null ? "vec4(0.0)" : `Wt(${block.bias} + o)`};\n`;
    for (const t of block.terms) {
      const f = `f_${t.source}`;
      if (t.kind === "bias") {
        c += `  for (int o = 0; o < ${O}; o++) ${target}[${offset} + o] += Wt(${t.bias} + o);\n`;
      } else if (t.kind === "identity") {
        c += `  for (int o = 0; o < ${O}; o++) ${target}[${offset} + o] += ${f}(cell, o);\n`;
      } else {
        const k = t.k, half = (k - 1) / 2, I = sourceGroups(t.source);
        c += `  for (int t = 0; t < ${k * k}; t++) {\n`;
        c += `    ivec2 q = cell + ivec2(t % ${k} - ${half}, t / ${k} - ${half}) * ${t.dilation};\n`;
        if (t.kind === "depthwise") {
          c += `    for (int o = 0; o < ${O}; o++) ${target}[${offset} + o] += Wt(${t.weights} + t * ${O} + o) * ${f}(q, o);\n`;
        } else {
          c += `    for (int i = 0; i < ${I}; i++) {\n      vec4 v = ${f}(q, i);\n`;
          c += `      for (int o = 0; o < ${O}; o++) {\n        int b = ${t.weights} + ((t * ${O} + o) * ${I} + i) * 4;\n`;
          c += `        ${target}[${offset} + o] += Wt(b) * v.x + Wt(b + 1) * v.y + Wt(b + 2) * v.z + Wt(b + 3) * v.w;\n      }\n    }\n`;
        }
        c += "  }\n";
      }
    }
    return c;
  }

  function outputs(n) {
    let c = "";
    for (let i = 0; i < n; i++) c += `layout(location = ${i}) out vec4 out${i};\n`;
    return c;
  }

  function chunks(total) {
    const list = [];
    for (let start = 0; start < total; start += MAX_DRAW) list.push([start, Math.min(MAX_DRAW, total - start)]);
    return list;
  }


  const prepassPrograms = P.prepasses.map((pre) =>
    chunks(pre.groups).map(([start, n]) => {
      let c = HEADER + fetchers(["x"]) + outputs(n);
      c += `void main() {\n  ivec2 cell = ivec2(gl_FragCoord.xy);\n  vec4 h[${pre.groups}];\n`;
      c += blockCode(pre, "h", 0);
      for (let i = 0; i < n; i++) c += `  out${i} = max(h[${start + i}], 0.0);\n`;
      c += "}\n";
      return { ...program(c), start, n };
    })
  );

  const F = P.features.reduce((a, b) => a + b.groups, 0);
  const stepSources = ["x", ...P.prepasses.map((p) => p.name)];
  const updatePrograms = chunks(G).map(([start, n]) => {
    let c = HEADER + fetchers(stepSources) + outputs(n);
    c += `uniform uint uKey;\nuniform float uRate;\nuniform bool uFire;\n`;
    c += `uint mix32(uint x) {\n  x ^= x >> 16u; x *= 0x7feb352du; x ^= x >> 15u; x *= 0x846ca68bu; x ^= x >> 16u;\n  return x;\n}\n`;
    c += `void main() {\n  ivec2 cell = ivec2(gl_FragCoord.xy);\n  vec4 f[${F}];\n`;
    let offset = 0;
    for (const block of P.features) {
      c += blockCode(block, "f", offset);
      offset += block.groups;
    }
    let input = "f";
    P.mlp.forEach((layer, li) => {
      const last = li === P.mlp.length - 1;
      const name = `h${li}`;
      const first = last ? start : 0;
      const count = last ? n : layer.out;
      c += `  vec4 ${name}[${count}];\n  for (int o = 0; o < ${count}; o++) {\n`;
      c += `    vec4 a = Wt(${layer.bias} + ${first} + o);\n`;
      c += `    for (int i = 0; i < ${layer.in}; i++) {\n      vec4 v = ${input}[i];\n`;
      c += `      int b = ${layer.weights} + ((${first} + o) * ${layer.in} + i) * 4;\n`;
      c += `      a += Wt(b) * v.x + Wt(b + 1) * v.y + Wt(b + 2) * v.z + Wt(b + 3) * v.w;\n    }\n`;
      if (layer.relu) c += "    a = max(a, 0.0);\n";
      if (layer.residual) c += `    a += ${input}[o];\n`;
      c += `    ${name}[o] = a;\n  }\n`;
      input = name;
    });
    c += "  float fire = 1.0;\n  if (uFire) {\n";
    c += `    uint bits = mix32(uKey ^ uint(cell.y * uSize.x + cell.x));\n`;
    c += "    fire = float(bits >> 8u) * (1.0 / 16777216.0) <= uRate ? 1.0 : 0.0;\n  }\n";
    for (let i = 0; i < n; i++) {
      const dx = P.update_tanh ? `tanh(${input}[${i}])` : `${input}[${i}]`;
      c += `  out${i} = texelFetch(u_x, ivec3(cell, ${start + i}), 0) + ${dx} * fire;\n`;
    }
    c += "}\n";
    return { ...program(c), start, n };
  });

  // a pass over every state layer: `body` changes `v`, layer g's value at the cell; `prologue` runs once first
  function layerPrograms(uniformsCode, body, helpers = "", prologue = "") {
    return chunks(G).map(([start, n]) => {
      let c = HEADER + uniformsCode + helpers + outputs(n) + "void main() {\n  ivec2 cell = ivec2(gl_FragCoord.xy);\n";
      c += prologue + "  vec4 v;\n  int g;\n";
      for (let i = 0; i < n; i++) c += `  g = ${start + i};\n  v = texelFetch(u_a, ivec3(cell, g), 0);\n${body}  out${i} = v;\n`;
      c += "}\n";
      return { ...program(c), start, n };
    });
  }

  const alivePrograms = layerPrograms(
    "uniform sampler2DArray u_a;\nuniform sampler2DArray u_old;\nuniform float uThreshold;\n",
    "  if (!alive) v = vec4(0.0);\n",
    `float maxAlpha(sampler2DArray s, ivec2 p) {
  float m = -1e30;
  for (int dy = -1; dy <= 1; dy++) for (int dx = -1; dx <= 1; dx++) {
    ivec2 q = p + ivec2(dx, dy);
    ${circular ? "q = wrap(q);" : "if (outside(q)) continue;"}
    m = max(m, texelFetch(s, ivec3(q, 0), 0).w);
  }
  return m;
}
`,
    "  bool alive = maxAlpha(u_old, cell) > uThreshold && maxAlpha(u_a, cell) > uThreshold;\n"
  );

  const diffusePrograms = layerPrograms(
    "uniform sampler2DArray u_a;\n",
    `  {
    vec4 lap = -4.0 * v;
    for (int k = 0; k < 4; k++) {
      ivec2 q = cell + ivec2(k == 0 ? 1 : k == 1 ? -1 : 0, k == 2 ? 1 : k == 3 ? -1 : 0);
      ${circular ? "q = wrap(q);" : "if (outside(q)) continue;"}
      lap += texelFetch(u_a, ivec3(q, g), 0);
    }
    vec4 channel = vec4(4 * g) + vec4(0.0, 1.0, 2.0, 3.0);
    vec4 signal = step(float(${P.channels - P.signal_channels}), channel) * (1.0 - step(float(${P.channels}), channel));
    v += signal * 0.125 * lap;
  }
`
  );

  // a classifier's alive mask: where the input's first channel exceeds the threshold, nothing else
  const inputAlivePrograms =
    P.alive_masking && P.alive_from === "input"
      ? layerPrograms(
          "uniform sampler2DArray u_a;\nuniform sampler2DArray u_cond;\nuniform float uThreshold;\n",
          "  if (!alive) v = vec4(0.0);\n",
          "",
          "  bool alive = texelFetch(u_cond, ivec3(cell, 0), 0).x > uThreshold;\n"
        )
      : null;

  const erasePrograms = layerPrograms(
    "uniform sampler2DArray u_a;\nuniform vec2 uCenter;\nuniform float uRadius;\n",
    "  if (dot(vec2(cell) + 0.5 - uCenter, vec2(cell) + 0.5 - uCenter) < uRadius * uRadius) v = vec4(0.0);\n"
  );

  // the picture: premultiplied RGBA over the background; a translation model's drawn input over it, in blue
  const EDGE_COLOUR = "vec3(0.15, 0.35, 0.85)";
  const drawProgram = program(
    HEADER +
      `uniform sampler2DArray u_a;
${IMAGE ? "uniform sampler2DArray u_cond;" : ""}
uniform int uScale;
uniform int uBackground;
out vec4 color;
void main() {
  ivec2 cell = ivec2(gl_FragCoord.xy) / uScale;
  cell.y = uSize.y - 1 - cell.y;
  vec4 s = texelFetch(u_a, ivec3(cell, 0), 0);
  vec3 rgb = clamp(s.rgb, 0.0, 1.0);
  if (uBackground == 0) rgb = clamp(1.0 - clamp(s.a, 0.0, 1.0) + rgb, 0.0, 1.0);
${
  IMAGE
    ? `  vec4 i0 = texelFetch(u_cond, ivec3(cell, 0), 0);
  float edge = clamp(${INK === 1 ? "i0.x" : `1.0 - (i0.x + i0.y + i0.z) / ${KI >= 3 ? "3.0" : "1.0"}`}, 0.0, 1.0);
  rgb = mix(rgb, ${EDGE_COLOUR}, 0.6 * edge);`
    : ""
}
  color = vec4(rgb, 1.0);
}
`
  );

  // a classifier's view: each living cell in its class's colour (the argmax of the class channels), as dark
  // as the input's ink, on white (ClassifyTask.picture); a photograph is tinted half by the votes
  const votesProgram = VOTES
    ? program(
        HEADER +
          `uniform sampler2DArray u_a;
uniform sampler2DArray u_cond;
uniform int uScale;
uniform float uThreshold;
const vec3 PALETTE[${NK}] = vec3[${NK}](${data.palette.map((c) => `vec3(${c.map((v) => v.toFixed(6)).join(", ")})`).join(", ")});
out vec4 color;
float channel(ivec2 cell, int c) {
  vec4 v = texelFetch(u_a, ivec3(cell, c / 4), 0);
  int j = c % 4;
  return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
}
void main() {
  ivec2 cell = ivec2(gl_FragCoord.xy) / uScale;
  cell.y = uSize.y - 1 - cell.y;
  int best = 0;
  float top = channel(cell, 0);
  for (int c = 1; c < ${NK}; c++) {
    float v = channel(cell, c);
    if (v > top) { top = v; best = c; }
  }
  vec3 colour = PALETTE[best];
  vec4 input0 = texelFetch(u_cond, ivec3(cell, 0), 0);
${
  KI === 1
    ? `  float live = ${P.alive_masking ? "input0.x > uThreshold ? 1.0 : 0.0" : "1.0"};
  vec3 rgb = 1.0 - live * clamp(input0.x, 0.0, 1.0) * (1.0 - colour);`
    : "  vec3 rgb = 0.5 * input0.rgb + 0.5 * colour;"
}
  color = vec4(clamp(rgb, 0.0, 1.0), 1.0);
}
`
      )
    : null;

  // ---- state -------------------------------------------------------------------------------------
  // the state and two scratch arrays that rotate each step, and the prepasses' arrays
  let state = layers(G);
  let spare = layers(G);
  let third = layers(G);
  const pre = P.prepasses.map((p) => layers(p.groups));
  const fbo = gl.createFramebuffer(); // the passes: up to MAX_DRAW layers at once
  const single = gl.createFramebuffer(); // one layer: clearing and reading back

  // a classifier's input: kept here (cell-major, KI values a cell) and uploaded whole when it changes;
  // always float32, since it is only read
  const ink = new Float32Array(IMAGE ? H * W * KI : 0);
  const inputTex = IMAGE
    ? (() => {
        const tex = gl.createTexture();
        gl.bindTexture(gl.TEXTURE_2D_ARRAY, tex);
        gl.texStorage3D(gl.TEXTURE_2D_ARRAY, 1, gl.RGBA32F, W, H, KG);
        for (const k of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D_ARRAY, k, gl.NEAREST);
        for (const k of [gl.TEXTURE_WRAP_S, gl.TEXTURE_WRAP_T]) gl.texParameteri(gl.TEXTURE_2D_ARRAY, k, gl.CLAMP_TO_EDGE);
        return { tex, count: KG };
      })()
    : null;

  function upload() {
    const layer = new Float32Array(H * W * 4);
    gl.bindTexture(gl.TEXTURE_2D_ARRAY, inputTex.tex);
    for (let g = 0; g < KG; g++) {
      layer.fill(0);
      for (let i = 0; i < H * W; i++) {
        for (let j = 0; j < 4 && 4 * g + j < KI; j++) layer[i * 4 + j] = ink[i * KI + 4 * g + j];
      }
      gl.texSubImage3D(gl.TEXTURE_2D_ARRAY, 0, 0, 0, g, W, H, 1, gl.RGBA, gl.FLOAT, layer);
    }
  }

  // an image of the data: its channels' H×W planes → the input
  function setImage(planes) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        for (let c = 0; c < KI; c++) ink[(y * W + x) * KI + c] = planes[c][y][x];
      }
    }
    upload();
  }

  // a stroke from (x0, y0) to (x1, y1) in cells: a soft round brush of radius r (full ink within r/3, fading to
  // nothing at r) moves the input towards INK, or when erasing towards 1 − INK
  function paint(x0, y0, x1, y1, r, erase) {
    const dx = x1 - x0, dy = y1 - y0, length2 = dx * dx + dy * dy;
    const rows = [Math.max(0, Math.floor(Math.min(y0, y1) - r)), Math.min(H - 1, Math.ceil(Math.max(y0, y1) + r))];
    const cols = [Math.max(0, Math.floor(Math.min(x0, x1) - r)), Math.min(W - 1, Math.ceil(Math.max(x0, x1) + r))];
    for (let y = rows[0]; y <= rows[1]; y++) {
      for (let x = cols[0]; x <= cols[1]; x++) {
        const px = x + 0.5, py = y + 0.5;
        const t = length2 > 0 ? Math.min(1, Math.max(0, ((px - x0) * dx + (py - y0) * dy) / length2)) : 0;
        const d = Math.hypot(px - (x0 + t * dx), py - (y0 + t * dy));
        if (d >= r) continue;
        const a = Math.min(1, 1.5 * (1 - d / r));
        for (let c = 0; c < KI; c++) {
          const i = (y * W + x) * KI + c;
          const up = erase ? INK === 0 : INK === 1; // raising towards 1, else lowering towards 0
          const v = up ? Math.max(ink[i], a) : Math.min(ink[i], 1 - a);
          ink[i] = Math.min(1, Math.max(0, v));
        }
      }
    }
    upload();
  }

  function attach(tex, layer) {
    gl.bindFramebuffer(gl.FRAMEBUFFER, single);
    gl.framebufferTextureLayer(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, tex, 0, layer);
    gl.readBuffer(gl.COLOR_ATTACHMENT0);
  }

  function bindSampler(pr, name, unit, tex, target = gl.TEXTURE_2D_ARRAY) {
    if (pr.uniforms[name] == null) return;
    gl.activeTexture(gl.TEXTURE0 + unit);
    gl.bindTexture(target, tex);
    gl.uniform1i(pr.uniforms[name], unit);
  }

  function run(pr, target, samplers, set) {
    gl.bindFramebuffer(gl.FRAMEBUFFER, fbo);
    const buffers = [];
    for (let i = 0; i < MAX_DRAW; i++) {
      const on = i < pr.n;
      gl.framebufferTextureLayer(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0 + i, on ? target.tex : null, 0, on ? pr.start + i : 0);
      buffers.push(on ? gl.COLOR_ATTACHMENT0 + i : gl.NONE);
    }
    gl.drawBuffers(buffers);
    gl.viewport(0, 0, W, H);
    gl.useProgram(pr.p);
    bindSampler(pr, "uW", 0, weightTex, gl.TEXTURE_2D);
    if (pr.uniforms.uSize) gl.uniform2i(pr.uniforms.uSize, W, H);
    let unit = 1;
    for (const [name, tex] of Object.entries(samplers)) bindSampler(pr, `u_${name}`, unit++, tex.tex);
    if (set) set(pr.uniforms);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  }

  // ---- the NCA -----------------------------------------------------------------------------------
  const nca = {
    steps: 0,
    seed: 0,
    calls: 0,
    klass: data.condition || 0,
    running: !location.hash.includes("paused"),
    stepsPerFrame: data.steps_per_frame,
  };
  const fixedSeed = /seed=(\d+)/.exec(location.hash);

  function condition() {
    const values = new Float32Array(Math.max(KG, 1) * 4);
    if (P.condition_channels) values[nca.klass] = 1.0;
    return values;
  }

  function step() {
    P.prepasses.forEach((pass, i) => {
      for (const pr of prepassPrograms[i]) {
        run(pr, pre[i], IMAGE ? { x: state, cond: inputTex } : { x: state }, (u) => u.uCond && gl.uniform4fv(u.uCond, condition()));
      }
    });
    const fire = P.fire_rate < 1.0;
    const key = fire ? mix(mix(mix(nca.seed) ^ nca.calls) ^ 0) : 0;
    const samplers = { x: state };
    if (IMAGE) samplers.cond = inputTex;
    P.prepasses.forEach((pass, i) => (samplers[pass.name] = pre[i]));
    for (const pr of updatePrograms) {
      run(pr, spare, samplers, (u) => {
        if (u.uCond) gl.uniform4fv(u.uCond, condition());
        gl.uniform1ui(u.uKey, key);
        gl.uniform1f(u.uRate, P.fire_rate);
        gl.uniform1i(u.uFire, fire ? 1 : 0);
      });
    }
    if (fire) nca.calls += 1;
    let current = spare;
    let free = third;
    if (P.signal_channels && P.signal_steps) {
      for (let s = 0; s < P.signal_steps; s++) {
        for (const pr of diffusePrograms) run(pr, free, { a: current });
        [current, free] = [free, current];
      }
    }
    if (inputAlivePrograms) {
      for (const pr of inputAlivePrograms) {
        run(pr, free, { a: current, cond: inputTex }, (u) => gl.uniform1f(u.uThreshold, P.alive_threshold));
      }
      [current, free] = [free, current];
    } else if (P.alive_masking) {
      for (const pr of alivePrograms) {
        run(pr, free, { a: current, old: state }, (u) => gl.uniform1f(u.uThreshold, P.alive_threshold));
      }
      [current, free] = [free, current];
    }
    // rotate: the new state becomes `state`, the other two are scratch
    const old = state;
    state = current;
    spare = free;
    third = old;
    nca.steps += 1;
  }

  function erase(x, y, radius) {
    for (const pr of erasePrograms) {
      run(pr, spare, { a: state }, (u) => {
        gl.uniform2f(u.uCenter, x, y);
        gl.uniform1f(u.uRadius, radius);
      });
    }
    [state, spare] = [spare, state];
  }

  function plant(x, y) {
    const col = Math.min(W - 1, Math.max(0, Math.floor(x)));
    const row = Math.min(H - 1, Math.max(0, Math.floor(y)));
    const kind = data.seed.kind;
    const cell = new Float32Array(G * 4);
    if (kind === "random_color") {
      for (let c = 0; c < 3; c++) cell[c] = Math.random();
      cell[3] = 1.0;
    } else {
      for (let c = 3; c < P.channels; c++) cell[c] = 1.0;
    }
    gl.bindTexture(gl.TEXTURE_2D_ARRAY, state.tex);
    for (let g = 0; g < G; g++) {
      gl.texSubImage3D(gl.TEXTURE_2D_ARRAY, 0, col, row, g, 1, 1, 1, gl.RGBA, gl.FLOAT, cell.subarray(g * 4, g * 4 + 4));
    }
  }

  function reset() {
    for (let g = 0; g < G; g++) {
      attach(state.tex, g);
      gl.clearBufferfv(gl.COLOR, 0, [0, 0, 0, 0]);
    }
    if (data.seed.kind !== "zeros") for (const [px, py] of data.seed.positions) plant(px * W, py * H);
    nca.seed = fixedSeed ? Number(fixedSeed[1]) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
    nca.calls = 0;
    nca.steps = 0;
  }

  function read() {
    const out = new Float32Array(H * W * P.channels);
    const layer = new Float32Array(H * W * 4);
    for (let g = 0; g < G; g++) {
      attach(state.tex, g);
      gl.readPixels(0, 0, W, H, gl.RGBA, gl.FLOAT, layer);
      for (let i = 0; i < H * W; i++) {
        for (let j = 0; j < 4 && 4 * g + j < P.channels; j++) out[i * P.channels + 4 * g + j] = layer[i * 4 + j];
      }
    }
    return out;
  }

  // ---- the view ----------------------------------------------------------------------------------
  const scale = data.scale;
  const backgrounds = { white: 0, black: 1, none: 1 };

  function draw() {
    if (canvas.width !== W * scale || canvas.height !== H * scale) {
      canvas.width = W * scale;
      canvas.height = H * scale;
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.viewport(0, 0, canvas.width, canvas.height);
    if (VOTES) {
      gl.useProgram(votesProgram.p);
      bindSampler(votesProgram, "u_a", 1, state.tex);
      bindSampler(votesProgram, "u_cond", 2, inputTex.tex);
      gl.uniform2i(votesProgram.uniforms.uSize, W, H);
      gl.uniform1i(votesProgram.uniforms.uScale, scale);
      gl.uniform1f(votesProgram.uniforms.uThreshold, P.alive_threshold);
      gl.drawArrays(gl.TRIANGLES, 0, 3);
      return;
    }
    gl.useProgram(drawProgram.p);
    bindSampler(drawProgram, "u_a", 1, state.tex);
    if (IMAGE) bindSampler(drawProgram, "u_cond", 2, inputTex.tex);
    gl.uniform2i(drawProgram.uniforms.uSize, W, H);
    gl.uniform1i(drawProgram.uniforms.uScale, scale);
    gl.uniform1i(drawProgram.uniforms.uBackground, backgrounds[data.background] ?? 0);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  }

  const $ = (id) => document.getElementById(id);
  const pauseButton = $("pause");
  const speed = $("speed");
  const brush = $("brush");
  speed.value = nca.stepsPerFrame;
  brush.max = Math.max(2, Math.floor(Math.max(W, H) / 2));
  if (IMAGE) {
    // a pen for digits a few cells wide, for edges a cell wide: radius in half cells
    brush.min = "0.5";
    brush.step = "0.5";
    brush.value = VOTES ? Math.max(1.5, Math.round(Math.max(W, H) * 0.2) / 2) : 1;
  } else {
    brush.value = Math.max(1, Math.round(Math.max(W, H) * 0.08));
  }

  function labels() {
    $("speed-value").textContent = speed.value;
    $("brush-value").textContent = brush.value;
    pauseButton.textContent = nca.running ? "Pause" : "Resume";
  }
  speed.addEventListener("input", () => { nca.stepsPerFrame = Number(speed.value); labels(); });
  brush.addEventListener("input", labels);
  pauseButton.addEventListener("click", () => { nca.running = !nca.running; labels(); });
  $("step").addEventListener("click", () => { step(); show(); });
  $("reset").addEventListener("click", () => { reset(); show(); });
  if (P.condition_channels && !IMAGE) {
    $("class-label").hidden = false;
    const select = $("class");
    data.classes.forEach((name, i) => select.add(new Option(name, String(i))));
    select.value = String(nca.klass);
    select.addEventListener("change", () => { nca.klass = Number(select.value); });
  }
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    if (e.key === " ") { nca.running = !nca.running; labels(); e.preventDefault(); }
    else if (e.key === "s") { step(); show(); }
    else if (e.key === "r") { reset(); show(); }
  });

  function cellAt(e) {
    const box = canvas.getBoundingClientRect();
    return [((e.clientX - box.left) / box.width) * W, ((e.clientY - box.top) / box.height) * H];
  }
  // ---- a classifier: the input, its strokes, the votes ----------------------------------------------
  // the class channels' mean over the living cells, the image's prediction (their argmax; null without living
  // cells) and the share of living cells whose own vote agrees (ClassifyTask.predict)
  function votes() {
    const s = read();
    const C = P.channels;
    const sums = new Float64Array(NK);
    const count = new Float64Array(NK);
    let n = 0;
    for (let i = 0; i < H * W; i++) {
      if (P.alive_masking && !(ink[i * KI] > THRESHOLD)) continue;
      n += 1;
      let best = 0;
      for (let k = 0; k < NK; k++) {
        sums[k] += s[i * C + k];
        if (s[i * C + k] > s[i * C + best]) best = k;
      }
      count[best] += 1;
    }
    const means = Array.from(sums, (v) => v / Math.max(n, 1));
    let top = 0;
    for (let k = 1; k < NK; k++) if (means[k] > means[top]) top = k;
    return { means, cells: n, prediction: n ? top : null, agreement: n ? count[top] / n : 0 };
  }

  let predictionShown = { time: -1e9, dirty: true };
  function showPrediction() {
    const v = votes();
    $("prediction").textContent = v.prediction == null ? "–" : data.classes[v.prediction];
    $("prediction").style.color = v.prediction == null ? "" : `rgb(${data.palette[v.prediction].map((c) => Math.round(c * 255)).join(", ")})`;
    $("agreement").textContent = v.prediction == null ? "(no ink)" : `(${Math.round(v.agreement * 100)}% of ${v.cells} cells agree)`;
    predictionShown = { time: performance.now(), dirty: false };
    return v;
  }

  // the view and, for a classifier, its prediction
  function show() {
    draw();
    if (VOTES) showPrediction();
  }

  if (IMAGE) {
    $("hint").textContent = VOTES
      ? "Drag to draw the input · shift-drag or right-drag erases · Clear empties it · space pauses, s steps, r resets the cells"
      : "Drag to draw edges · shift-drag or right-drag erases them · alt-drag cuts the cells · Clear empties the input · space pauses, s steps, r regrows from the seed";
    $("prediction-box").hidden = !VOTES;
    const legend = $("legend");
    legend.hidden = !VOTES;
    if (VOTES) data.classes.forEach((name, k) => {
      const entry = document.createElement("span");
      entry.className = "entry";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = `rgb(${data.palette[k].map((c) => Math.round(c * 255)).join(", ")})`;
      const label = document.createElement("span");
      label.className = "name";
      label.textContent = name;
      entry.append(swatch, label);
      legend.append(entry);
    });
    $("example-label").hidden = false;
    const examples = $("example");
    examples.add(new Option("drawn", ""));
    data.examples.forEach((e, i) => examples.add(new Option(e.class ?? e.name, String(i))));
    const start = data.examples.findIndex((e) => e.index === data.input.about.index);
    examples.value = start >= 0 ? String(start) : "";
    examples.addEventListener("change", () => {
      if (examples.value !== "") setImage(data.examples[Number(examples.value)].image);
      show();
    });
    $("clear").hidden = false;
    $("clear").addEventListener("click", () => {
      ink.fill(1 - INK);
      upload();
      examples.value = "";
      show();
    });

    let stroke = null;
    canvas.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 && e.button !== 2) return;
      const [x, y] = cellAt(e);
      stroke = { id: e.pointerId, erase: e.button === 2 || e.shiftKey, cut: !VOTES && e.altKey, x, y };
      canvas.setPointerCapture(e.pointerId);
      if (stroke.cut) {
        erase(x, y, Number(brush.value));
        draw();
        e.preventDefault();
        return;
      }
      paint(x, y, x, y, Number(brush.value), stroke.erase);
      examples.value = "";
      draw();
      predictionShown.dirty = true; // the next frame reads the votes back
      e.preventDefault();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!stroke || stroke.id !== e.pointerId) return;
      const [x, y] = cellAt(e);
      if (stroke.cut) {
        erase(x, y, Number(brush.value));
        draw();
        return;
      }
      paint(stroke.x, stroke.y, x, y, Number(brush.value), stroke.erase);
      stroke.x = x;
      stroke.y = y;
      draw();
      predictionShown.dirty = true;
    });
    const release = (e) => { if (stroke && stroke.id === e.pointerId) stroke = null; };
    canvas.addEventListener("pointerup", release);
    canvas.addEventListener("pointercancel", release);
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  } else {
    let dragging = null;
    let lastDown = { time: -1e9, x: 0, y: 0 };
    canvas.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      const [x, y] = cellAt(e);
      const now = performance.now();
      const twice = now - lastDown.time < 350 && Math.hypot(e.clientX - lastDown.x, e.clientY - lastDown.y) < 12;
      lastDown = { time: twice ? -1e9 : now, x: e.clientX, y: e.clientY };
      if (twice) {
        plant(x, y);
      } else {
        dragging = e.pointerId;
        canvas.setPointerCapture(e.pointerId);
        erase(x, y, Number(brush.value));
      }
      draw();
      e.preventDefault();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (dragging !== e.pointerId) return;
      const [x, y] = cellAt(e);
      erase(x, y, Number(brush.value));
      draw();
    });
    const release = (e) => { if (dragging === e.pointerId) dragging = null; };
    canvas.addEventListener("pointerup", release);
    canvas.addEventListener("pointercancel", release);
    canvas.addEventListener("dblclick", (e) => e.preventDefault());

  }

  let shown = { time: performance.now(), steps: 0 };
  function readout(now) {
    if (now - shown.time >= 500) {
      const rate = ((nca.steps - shown.steps) * 1000) / (now - shown.time);
      nca.stepsPerSecond = rate;
      shown = { time: now, steps: nca.steps };
      $("readout").textContent = `step ${nca.steps} · ${rate.toFixed(0)} steps/s · ${H}×${W} cells`;
    }
  }

  function frame(now) {
    if (nca.running) for (let i = 0; i < nca.stepsPerFrame; i++) step();
    draw();
    if (VOTES && (nca.running || predictionShown.dirty) && now - predictionShown.time >= 100) showPrediction();
    readout(now);
    requestAnimationFrame(frame);
  }

  // ---- what tests and benchmarks drive ---------------------------------------------------------------
  window.nca = Object.assign(nca, {
    grid: () => [H, W],
    format: float32 ? "float32" : "float16",
    step(n = 1) { for (let i = 0; i < n; i++) step(); show(); },
    read: () => Array.from(read()),
    erase(x, y, r) { erase(x, y, r); draw(); },
    plant(x, y) { plant(x, y); draw(); },
    reset(seed) { reset(); if (seed != null) nca.seed = seed >>> 0; show(); },
    pause() { nca.running = false; labels(); },
    setClass(i) { nca.klass = i; if (P.condition_channels) $("class").value = String(i); },
    shaders: () => updatePrograms.map((p) => p.source),
    // a classifier: its input (cell-major, as read), the class channels' means over the living cells, the prediction
    input: () => Array.from(ink),
    setInput(values) { ink.set(values); upload(); show(); },
    votes: () => (VOTES ? votes().means : null),
    prediction: () => (VOTES ? votes().prediction : null),
    // steps per second of `n` steps, the GPU finished (one pixel read back waits for it)
    benchmark(n) {
      const pixel = new Float32Array(4);
      const sync = () => {
        attach(state.tex, 0);
        gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.FLOAT, pixel);
      };
      sync();
      const t0 = performance.now();
      for (let i = 0; i < n; i++) step();
      sync();
      return (n * 1000) / (performance.now() - t0);
    },
  });

  if (IMAGE) setImage(data.input.image);
  reset();
  labels();
  show();
  requestAnimationFrame(frame);
  nca.ready = true;
})();
