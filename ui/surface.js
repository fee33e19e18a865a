// WebGL view of a cortical map (a SurfaceScene); the payloads are described in ui/surface.py.
// One module for two components: "alignment.surface_mesh" holds a mesh while it is mounted,
// "alignment.surface_view" draws a map on it.

const MESHES = globalThis.__alignmentSurfaceMeshes || (globalThis.__alignmentSurfaceMeshes = new Map());
const WAITING = globalThis.__alignmentSurfaceWaiting || (globalThis.__alignmentSurfaceWaiting = new Map());
const VIEWS = new WeakMap();
const MOUNTED_MESHES = new WeakMap();
const TYPES = { u1: Uint8Array, u2: Uint16Array, u4: Uint32Array, f4: Float32Array };
const ORBIT_PER_PX = 0.008;  // radians per pixel of drag
const FIT = 0.94;  // share of the plot area the brain fills after a reset
const COLORBAR_WIDTH = 92;  // px

function unpack(bytes) {
  const head = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + head)));
  const start = bytes.byteOffset + 4 + head;
  const arrays = {};
  for (const [name, [offset, dtype, length]] of Object.entries(header.arrays)) {
    const T = TYPES[dtype];
    arrays[name] = new T(bytes.buffer.slice(start + offset, start + offset + length * T.BYTES_PER_ELEMENT));
  }
  return { header, arrays };
}

// ------------------------------------------------------------------------------------ mesh
function buildMesh({ header, arrays }) {
  const hemis = header.hemispheres;
  let nv = 0, ni = 0;
  for (const h of hemis) { nv += arrays[h + "_xyz"].length / 3; ni += arrays[h + "_faces"].length; }
  const pos = new Float32Array(nv * 3), idx = new Uint32Array(ni), ranges = [];
  let v0 = 0, i0 = 0;
  for (const h of hemis) {
    const xyz = arrays[h + "_xyz"], faces = arrays[h + "_faces"], n = xyz.length / 3;
    for (let i = 0; i < xyz.length; i++) pos[3 * v0 + i] = xyz[i] * header.unit_mm + header.origin_mm[i % 3];
    for (let i = 0; i < faces.length; i++) idx[i0 + i] = faces[i] + v0;
    ranges.push({ hemisphere: h, start: v0, n });
    v0 += n; i0 += faces.length;
  }
  const nrm = new Float32Array(nv * 3), used = new Uint8Array(nv);
  for (let f = 0; f < ni; f += 3) {
    const a = 3 * idx[f], b = 3 * idx[f + 1], c = 3 * idx[f + 2];
    const ux = pos[b] - pos[a], uy = pos[b + 1] - pos[a + 1], uz = pos[b + 2] - pos[a + 2];
    const vx = pos[c] - pos[a], vy = pos[c + 1] - pos[a + 1], vz = pos[c + 2] - pos[a + 2];
    const nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
    for (const k of [a, b, c]) { nrm[k] += nx; nrm[k + 1] += ny; nrm[k + 2] += nz; }
    used[idx[f]] = used[idx[f + 1]] = used[idx[f + 2]] = 1;
  }
  const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
  for (let v = 0; v < nv; v++) {
    const l = Math.hypot(nrm[3 * v], nrm[3 * v + 1], nrm[3 * v + 2]) || 1;
    for (let k = 0; k < 3; k++) {
      nrm[3 * v + k] /= l;
      if (used[v]) { lo[k] = Math.min(lo[k], pos[3 * v + k]); hi[k] = Math.max(hi[k], pos[3 * v + k]); }
    }
  }
  const centre = lo.map((x, k) => (x + hi[k]) / 2);
  const radius = Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) / 2 || 1;
  return { pos, nrm, idx, used, ranges, centre, radius, flat: header.flat, nv };
}

function mountMesh(component) {
  const { data, parentElement } = component;
  if (!MOUNTED_MESHES.has(parentElement)) {
    const mesh = unpack(data);
    const id = mesh.header.id;
    const entry = MESHES.get(id) || { mesh: buildMesh(mesh), mounts: 0 };
    entry.mounts += 1;
    MESHES.set(id, entry);
    MOUNTED_MESHES.set(parentElement, id);
    for (const resume of WAITING.get(id) || []) resume();
    WAITING.delete(id);
  }
  return () => {
    const id = MOUNTED_MESHES.get(parentElement);
    MOUNTED_MESHES.delete(parentElement);
    const entry = MESHES.get(id);
    if (entry && --entry.mounts <= 0) MESHES.delete(id);
  };
}

// ------------------------------------------------------------------------------------ maths
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const unit = (a) => { const l = Math.hypot(...a) || 1; return a.map((x) => x / l); };

// rows: screen right, screen up, towards the viewer (the eye's direction)
function cameraRotation(eye, up) {
  const toward = unit(eye), right = unit(cross(toward.map((x) => -x), up));
  return [right, cross(right, toward.map((x) => -x)), toward];
}

function rotate(axis, angle) {  // rotation matrix (rows) about a unit axis
  const [x, y, z] = axis, c = Math.cos(angle), s = Math.sin(angle), t = 1 - c;
  return [[t * x * x + c, t * x * y - s * z, t * x * z + s * y],
          [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
          [t * x * z - s * y, t * y * z + s * x, t * z * z + c]];
}

const matmul = (a, b) => a.map((row) => [0, 1, 2].map((j) => row[0] * b[0][j] + row[1] * b[1][j] + row[2] * b[2][j]));

function niceTicks(lo, hi, count = 5) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const raw = span / count, mag = 10 ** Math.floor(Math.log10(raw)), r = raw / mag;
  const step = (r >= 7.5 ? 10 : r >= 3.5 ? 5 : r >= 1.5 ? 2 : 1) * mag;
  const out = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return out;
}

const formatNumber = (x, decimals) => (Number.isFinite(x) ? String(+x.toFixed(decimals)) : "—");

// ------------------------------------------------------------------------------------ view
const DRAW_VS = `#version 300 es
in vec3 p; in vec3 n; in vec3 c;
uniform mat3 R; uniform vec3 centre; uniform vec2 scale; uniform vec2 shift; uniform float depth;
out vec3 colour; out float shade;
void main() {
  vec3 s = R * (p - centre);
  gl_Position = vec4(s.xy * scale + shift, -s.z * depth, 1.0);
  shade = min(1.0, 0.8 + 0.5 * abs((R * n).z));
  colour = c;
}`;
const DRAW_FS = `#version 300 es
precision mediump float;
in vec3 colour; in float shade; out vec4 o;
void main() { o = vec4(colour * shade, 1.0); }`;
const PICK_VS = `#version 300 es
in vec3 p;
uniform mat3 R; uniform vec3 centre; uniform vec2 scale; uniform vec2 shift; uniform float depth;
flat out uint id;
void main() {
  vec3 s = R * (p - centre);
  gl_Position = vec4(s.xy * scale + shift, -s.z * depth, 1.0);
  id = uint(gl_VertexID) + 1u;
}`;
const PICK_FS = `#version 300 es
precision mediump float;
flat in uint id; out vec4 o;
void main() { o = vec4(float(id & 255u), float((id >> 8) & 255u), float((id >> 16) & 255u), 255.0) / 255.0; }`;

function program(gl, vs, fs) {
  const p = gl.createProgram();
  for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    gl.attachShader(p, s);
  }
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
  return p;
}

class SurfaceView {
  constructor(root) {
    this.root = root;
    this.box = document.createElement("div");
    this.box.className = "surface";
    this.title = document.createElement("div");
    this.title.className = "title";
    this.canvas = document.createElement("canvas");
    this.canvas.className = "gl";
    this.bar = document.createElement("canvas");
    this.bar.className = "colorbar";
    this.tip = document.createElement("div");
    this.tip.className = "hover";
    const reset = document.createElement("button");
    reset.className = "reset";
    reset.textContent = "⟲";
    reset.title = "Reset the view (or double-click the brain)";
    reset.onclick = () => this.resetCamera();
    this.box.append(this.title, this.canvas, this.bar, this.tip, reset);
    root.appendChild(this.box);
    this.drawn = 0;
    this.gl = this.canvas.getContext("webgl2", { antialias: true });
    if (!this.gl) {
      this.box.innerHTML = '<div class="nogl">This browser cannot draw the surface: it has no WebGL2. ' +
        "The Export menu gives the same map as an image or an interactive HTML file.</div>";
      return;
    }
    const gl = this.gl;
    this.draw3d = program(gl, DRAW_VS, DRAW_FS);
    this.pick3d = program(gl, PICK_VS, PICK_FS);
    this.buffers = { p: gl.createBuffer(), n: gl.createBuffer(), c: gl.createBuffer(), idx: gl.createBuffer() };
    this.pickValid = false;
    this.listen();
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(this.box);
  }

  dispose() {
    this.resizer?.disconnect();
    this.gl?.getExtension("WEBGL_lose_context")?.loseContext();
  }

  update(payload) {
    const { header } = payload;
    this.payload = payload;
    this.box.style.height = header.height + "px";
    this.box.style.setProperty("--surface-font", header.font.family);
    this.box.style.setProperty("--surface-color", header.font.color);
    this.box.style.fontSize = header.font.size + "px";
    this.title.textContent = header.title;
    this.title.style.fontSize = header.font.title_size + "px";
    this.canvas.setAttribute("aria-label", header.title || "cortical surface");
    if (!this.gl) return;
    const entry = MESHES.get(header.mesh);
    if (!entry) {  // its mesh element has not been mounted yet
      const queue = WAITING.get(header.mesh) || [];
      queue.push(() => this.payload === payload && this.update(payload));
      WAITING.set(header.mesh, queue);
      return;
    }
    const cameraKey = JSON.stringify(header.camera), newMesh = entry.mesh !== this.mesh;
    if (newMesh) this.upload(entry.mesh);
    this.colours();
    this.layout();
    this.tip.style.display = "none";  // its value was the last map's
    // a new map on the same mesh and camera keeps the user's rotation, zoom and pan
    if (newMesh || cameraKey !== this.cameraKey) { this.cameraKey = cameraKey; this.resetCamera(false); }
    this.render();
    this.drawn += 1;
    const host = this.root.host || this.root;
    host.dataset.surfaceTitle = header.title;
    host.dataset.surfaceDrawn = String(this.drawn);
  }

  upload(mesh) {
    const gl = this.gl;
    this.mesh = mesh;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers.p);
    gl.bufferData(gl.ARRAY_BUFFER, mesh.pos, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers.n);
    gl.bufferData(gl.ARRAY_BUFFER, mesh.nrm, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.buffers.idx);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, mesh.idx, gl.STATIC_DRAW);
    this.rgb = new Uint8Array(mesh.nv * 3);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers.c);
    gl.bufferData(gl.ARRAY_BUFFER, this.rgb, gl.DYNAMIC_DRAW);
  }

  colours() {  // the colour-table entry of every vertex's code; RGB interpolates across faces
    const { arrays } = this.payload, lut = arrays.lut, rgb = this.rgb;
    for (const { hemisphere, start } of this.mesh.ranges) {
      const codes = arrays[hemisphere + "_codes"];
      for (let i = 0; i < codes.length; i++) {
        const k = 3 * codes[i], o = 3 * (start + i);
        rgb[o] = lut[k]; rgb[o + 1] = lut[k + 1]; rgb[o + 2] = lut[k + 2];
      }
    }
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers.c);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, rgb);
  }

  layout() {  // canvas below the title, colour bar on the right
    const { header } = this.payload;
    const dpr = Math.min(window.devicePixelRatio || 1, 2);
    const width = this.box.clientWidth || 600, height = header.height;
    const top = header.title ? Math.round(header.font.title_size * 1.5 + 12) : 6;
    const barWidth = header.colorbar ? COLORBAR_WIDTH : 0;
    this.size = { width: width - barWidth, height: height - top, dpr };
    Object.assign(this.canvas.style, { top: top + "px", width: this.size.width + "px", height: this.size.height + "px" });
    const w = Math.round(this.size.width * dpr), h = Math.round(this.size.height * dpr);
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
      this.pickValid = false;
    }
    this.drawColourbar(top, barWidth);
  }

  resize() {  // a new width keeps the rotation, zoom and pan, and fits the preset view again
    if (!this.payload || !this.mesh || !this.R) return;
    const width = this.size.width;
    this.layout();
    if (this.size.width !== width) this.fit();
    this.render();
  }

  resetCamera(draw = true) {
    const { header } = this.payload;
    this.R0 = cameraRotation(header.camera.eye, header.camera.up);
    this.R = this.R0;
    this.pan = [0, 0];
    this.zoom = 1;
    this.fit();
    if (draw) this.render();
  }

  fit() {  // scale and offset that centre the preset view's bounding box in the plot area
    const { pos, used, centre } = this.mesh;
    let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;
    const [r, u] = this.R0;
    for (let v = 0; v < this.mesh.nv; v++) {
      if (!used[v]) continue;
      const x = pos[3 * v] - centre[0], y = pos[3 * v + 1] - centre[1], z = pos[3 * v + 2] - centre[2];
      const sx = r[0] * x + r[1] * y + r[2] * z, sy = u[0] * x + u[1] * y + u[2] * z;
      xmin = Math.min(xmin, sx); xmax = Math.max(xmax, sx); ymin = Math.min(ymin, sy); ymax = Math.max(ymax, sy);
    }
    // mm per pixel so that the brain fills FIT of the plot area, centred
    this.mmPerPx = Math.max((xmax - xmin) / (this.size.width * FIT), (ymax - ymin) / (this.size.height * FIT));
    this.offset = [-(xmin + xmax) / 2, -(ymin + ymax) / 2];
    this.pickValid = false;
  }

  uniforms(prog) {
    const gl = this.gl, R = this.R, { width, height } = this.size;
    const k = this.zoom / this.mmPerPx;  // pixels per mm
    gl.uniformMatrix3fv(gl.getUniformLocation(prog, "R"), false,
      [R[0][0], R[1][0], R[2][0], R[0][1], R[1][1], R[2][1], R[0][2], R[1][2], R[2][2]]);
    const c = this.mesh.centre;
    // the offset re-centres the preset view's bounding box; it moves with the rotation's origin
    const centre = [0, 1, 2].map((j) => c[j] - this.offset[0] * R[0][j] - this.offset[1] * R[1][j]);
    gl.uniform3fv(gl.getUniformLocation(prog, "centre"), centre);
    gl.uniform2f(gl.getUniformLocation(prog, "scale"), (2 * k) / width, (2 * k) / height);
    gl.uniform2f(gl.getUniformLocation(prog, "shift"), (2 * this.pan[0]) / width, (-2 * this.pan[1]) / height);
    gl.uniform1f(gl.getUniformLocation(prog, "depth"), 1 / (2 * this.mesh.radius));
  }

  attributes(prog, names) {
    const gl = this.gl;
    for (let i = 0; i < 8; i++) gl.disableVertexAttribArray(i);
    for (const [name, buffer, size, type, normalised] of names) {
      const loc = gl.getAttribLocation(prog, name);
      if (loc < 0) continue;
      gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, size, type, normalised, 0, 0);
    }
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.buffers.idx);
  }

  render() {
    if (!this.mesh || !this.size) return;
    const gl = this.gl, b = this.buffers;
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.clearColor(1, 1, 1, 1);
    gl.enable(gl.DEPTH_TEST);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.useProgram(this.draw3d);
    this.uniforms(this.draw3d);
    this.attributes(this.draw3d, [["p", b.p, 3, gl.FLOAT, false], ["n", b.n, 3, gl.FLOAT, false],
                                  ["c", b.c, 3, gl.UNSIGNED_BYTE, true]]);
    gl.drawElements(gl.TRIANGLES, this.mesh.idx.length, gl.UNSIGNED_INT, 0);
    this.pickValid = false;
  }

  pickBuffer() {  // vertex ids drawn off screen, redrawn after the view changes
    const gl = this.gl, w = this.canvas.width, h = this.canvas.height;
    if (!this.pick || this.pick.w !== w || this.pick.h !== h) {
      if (this.pick) { gl.deleteFramebuffer(this.pick.fb); gl.deleteRenderbuffer(this.pick.colour); gl.deleteRenderbuffer(this.pick.depth); }
      const fb = gl.createFramebuffer(), colour = gl.createRenderbuffer(), depth = gl.createRenderbuffer();
      gl.bindRenderbuffer(gl.RENDERBUFFER, colour);
      gl.renderbufferStorage(gl.RENDERBUFFER, gl.RGBA8, w, h);
      gl.bindRenderbuffer(gl.RENDERBUFFER, depth);
      gl.renderbufferStorage(gl.RENDERBUFFER, gl.DEPTH_COMPONENT16, w, h);
      gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
      gl.framebufferRenderbuffer(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.RENDERBUFFER, colour);
      gl.framebufferRenderbuffer(gl.FRAMEBUFFER, gl.DEPTH_ATTACHMENT, gl.RENDERBUFFER, depth);
      this.pick = { fb, colour, depth, w, h };
      this.pickValid = false;
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.pick.fb);
    if (!this.pickValid) {
      gl.viewport(0, 0, w, h);
      gl.clearColor(0, 0, 0, 0);
      gl.enable(gl.DEPTH_TEST);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      gl.useProgram(this.pick3d);
      this.uniforms(this.pick3d);
      this.attributes(this.pick3d, [["p", this.buffers.p, 3, gl.FLOAT, false]]);
      gl.drawElements(gl.TRIANGLES, this.mesh.idx.length, gl.UNSIGNED_INT, 0);
      this.pickValid = true;
    }
  }

  vertexAt(x, y) {  // css pixels in the canvas → mesh vertex index, or -1
    const gl = this.gl, dpr = this.size.dpr, out = new Uint8Array(4);
    this.pickBuffer();
    gl.readPixels(Math.round(x * dpr), Math.round(this.canvas.height - y * dpr), 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, out);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    return out[3] ? out[0] + (out[1] << 8) + (out[2] << 16) - 1 : -1;
  }

  hover(x, y) {
    const { header, arrays } = this.payload;
    const v = this.vertexAt(x, y);
    const range = this.mesh.ranges.find((r) => v >= r.start && v < r.start + r.n);
    const values = range && arrays[range.hemisphere + "_values"];
    if (!values) { this.tip.style.display = "none"; return; }
    this.tip.textContent = `${formatNumber(values[v - range.start], header.decimals)}  ·  ${range.hemisphere}`;
    Object.assign(this.tip.style, { display: "block", left: x + 14 + "px", top: y + this.canvas.offsetTop + 8 + "px" });
  }

  listen() {
    const cv = this.canvas;
    let drag = null, pending = null;
    cv.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, pan: e.shiftKey || this.mesh?.flat };
      cv.setPointerCapture(e.pointerId);
      this.tip.style.display = "none";
    });
    cv.addEventListener("pointermove", (e) => {
      if (!this.mesh) return;
      if (drag) {
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        drag.x = e.clientX; drag.y = e.clientY;
        if (drag.pan) { this.pan[0] += dx; this.pan[1] += dy; } else {
          this.R = matmul(rotate([1, 0, 0], dy * ORBIT_PER_PX), matmul(rotate([0, 1, 0], dx * ORBIT_PER_PX), this.R));
        }
        if (!pending) pending = requestAnimationFrame(() => { pending = null; this.render(); });
        return;
      }
      const rect = cv.getBoundingClientRect(), x = e.clientX - rect.left, y = e.clientY - rect.top;
      if (!pending) pending = requestAnimationFrame(() => { pending = null; this.hover(x, y); });
    });
    const end = () => { drag = null; };
    cv.addEventListener("pointerup", end);
    cv.addEventListener("pointercancel", end);
    cv.addEventListener("pointerleave", () => { this.tip.style.display = "none"; });
    cv.addEventListener("dblclick", () => this.resetCamera());
    cv.addEventListener("wheel", (e) => {
      if (!this.mesh) return;
      e.preventDefault();
      const rect = cv.getBoundingClientRect();
      // zoom about the pointer: the point under it stays put
      const mx = e.clientX - rect.left - this.size.width / 2, my = e.clientY - rect.top - this.size.height / 2;
      const f = Math.exp(-e.deltaY * 0.0015);
      this.zoom *= f;
      this.pan = [mx + (this.pan[0] - mx) * f, my + (this.pan[1] - my) * f];
      this.render();
    }, { passive: false });
  }

  drawColourbar(top, width) {
    const cb = this.payload.header.colorbar, bar = this.bar;
    bar.style.display = cb ? "block" : "none";
    if (!cb) return;
    const dpr = this.size.dpr, h = this.size.height, font = this.payload.header.font;
    Object.assign(bar.style, { top: top + "px", width: width + "px", height: h + "px" });
    bar.width = Math.round(width * dpr);
    bar.height = Math.round(h * dpr);
    const ctx = bar.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, h);
    ctx.font = `${font.size}px ${font.family}`;
    ctx.fillStyle = font.color;
    const titleH = cb.title ? font.size * 1.6 : 0;
    const y0 = h * 0.15 + titleH / 2, y1 = h * 0.85, x0 = 6, barW = 14;
    if (cb.title) ctx.fillText(cb.title, x0, y0 - font.size * 0.6);
    const grad = ctx.createLinearGradient(0, y1, 0, y0);
    for (const [p, colour] of cb.scale) grad.addColorStop(p, colour);
    ctx.fillStyle = grad;
    ctx.fillRect(x0, y0, barW, y1 - y0);
    ctx.fillStyle = font.color;
    ctx.textBaseline = "middle";
    const span = cb.vmax - cb.vmin || 1;
    for (const t of niceTicks(cb.vmin, cb.vmax)) {
      const y = y1 - ((t - cb.vmin) / span) * (y1 - y0);
      ctx.fillRect(x0 + barW, y - 0.5, 4, 1);
      ctx.fillText(formatNumber(t, cb.decimals), x0 + barW + 7, y);
    }
  }
}

function mountView(component) {
  const { data, parentElement } = component;
  let view = VIEWS.get(parentElement);
  if (!view) { view = new SurfaceView(parentElement); VIEWS.set(parentElement, view); }
  view.update(unpack(data));
  return () => { view.dispose(); VIEWS.delete(parentElement); };
}

export default function (component) {
  return component.name === "alignment.surface_mesh" ? mountMesh(component) : mountView(component);
}
