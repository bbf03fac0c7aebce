// ferzoo serve's page: plain JavaScript, no build step, nothing from the network but this server.
"use strict";
const $ = (id) => document.getElementById(id);
const COLOURS = ["#ff4040", "#40c8ff", "#ffc800", "#78ff78", "#ff78ff"];
const CAMERA_EVERY_MS = 300;
let models = [];

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

async function loadModels() {
  const r = await fetch("/v1/models");
  models = (await r.json()).models;
  const select = $("model");
  for (const m of models) {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = `${m.name} (${m.weights})`;
    select.appendChild(o);
  }
  showExplainers();
}

function showExplainers() {
  const m = models.find((x) => x.name === $("model").value) || models[0];
  const select = $("explain");
  select.length = 1;
  for (const e of (m ? m.explainers : [])) {
    const o = document.createElement("option");
    o.value = o.textContent = e;
    select.appendChild(o);
  }
}

function photosUrl(withExplain) {
  const q = new URLSearchParams({ model: $("model").value });
  if (withExplain && $("explain").value) q.set("explain", $("explain").value);
  return "/v1/photos?" + q.toString();
}

function bars(probabilities, top) {
  const box = document.createElement("div");
  const entries = Object.entries(probabilities).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of entries) {
    const row = document.createElement("div");
    row.className = "bar" + (name === top ? " top" : "");
    row.innerHTML = `<span></span><span class="track"><span class="fill"></span></span><span></span>`;
    row.children[0].textContent = name;
    row.children[1].firstChild.style.width = (100 * p).toFixed(1) + "%";
    row.children[2].textContent = p.toFixed(2);
    box.appendChild(row);
  }
  return box;
}

// boxes and labels over a picture; scale: drawn pixels per picture pixel
function drawFaces(ctx, records, scale) {
  const line = Math.max(2, Math.round(ctx.canvas.width / 200));
  ctx.lineWidth = line;
  ctx.font = `${Math.max(12, Math.round(ctx.canvas.width / 30))}px sans-serif`;
  ctx.textBaseline = "top";
  for (const r of records) {
    if (r.status !== "ok" || !r.box) continue;
    const colour = COLOURS[r.face % COLOURS.length];
    const [x, y, w, h] = r.box.map((v) => v * scale);
    ctx.strokeStyle = colour;
    ctx.strokeRect(x, y, w, h);
    const text = `${r.class} ${r.probabilities[r.class].toFixed(2)}`;
    const tw = ctx.measureText(text).width + 2 * line;
    const th = parseInt(ctx.font, 10) + 2 * line;
    let ty = y - th;                                   // above the box, else inside it: always in the picture
    if (ty < 0) ty = y + line;
    const tx = Math.min(Math.max(0, x), ctx.canvas.width - tw);
    ctx.fillStyle = colour;
    ctx.fillRect(tx, ty, tw, th);
    ctx.fillStyle = "#000";
    ctx.fillText(text, tx + line, ty + line);
  }
}

function showResult(file, image, body) {
  const card = document.createElement("article");
  card.className = "card";
  card.dataset.file = file.name;
  const canvas = document.createElement("canvas");
  const scale = Math.max(1, 480 / image.naturalWidth);  // small photos drawn larger, with crisp labels
  canvas.width = Math.round(image.naturalWidth * scale);
  canvas.height = Math.round(image.naturalHeight * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  drawFaces(ctx, body.records || [], scale);
  const faces = document.createElement("div");
  faces.className = "faces";
  const title = document.createElement("h2");
  title.textContent = file.name;
  faces.appendChild(title);
  for (const r of body.records || []) {
    const div = document.createElement("div");
    div.className = "face";
    const label = document.createElement("div");
    label.className = "label face-label";
    if (r.status === "ok") {
      label.textContent = `face ${r.face}: ${r.class} ${r.probabilities[r.class].toFixed(2)}`;
      label.style.color = COLOURS[r.face % COLOURS.length].replace("ff", "b0");
      div.appendChild(label);
      div.appendChild(bars(r.probabilities, r.class));
      for (const [method, url] of Object.entries(r.explanations || {})) {
        const img = document.createElement("img");
        img.className = "explanation";
        img.alt = `${method} map of face ${r.face}`;
        img.src = url;
        div.appendChild(img);
      }
    } else {
      label.textContent = r.status;
      div.appendChild(label);
    }
    faces.appendChild(div);
  }
  card.appendChild(canvas);
  card.appendChild(faces);
  $("results").prepend(card);
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`${file.name}: the browser cannot show this picture`));
    img.src = URL.createObjectURL(file);
  });
}

async function sendPhotos(files) {
  files = Array.from(files);
  if (!files.length) return;
  setStatus(`classifying ${files.length} photo(s)...`);
  let done = 0;
  for (const file of files) {   // one request per photo: the server batches concurrent ones together
    const form = new FormData();
    form.append("photos", file, file.name);
    try {
      const [r, image] = await Promise.all([fetch(photosUrl(true), { method: "POST", body: form }), loadImage(file)]);
      const body = await r.json();
      if (!r.ok && !body.records) throw new Error(body.error || r.statusText);
      showResult(file, image, body);
      if (!r.ok) setStatus(body.error, true);
      done += 1;
    } catch (err) {
      setStatus(`${file.name}: ${err.message}`, true);
    }
  }
  if (done === files.length) setStatus(`${done} photo(s) classified`);
}

// -- camera ----------------------------------------------------------------------------------------------
let stream = null, timer = null, busy = false;

async function startCamera() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    setStatus(`camera: ${err.message}`, true);
    return;
  }
  const video = $("video");
  video.srcObject = stream;
  $("live").hidden = false;
  setStatus("camera on: a frame every " + CAMERA_EVERY_MS + " ms");
  timer = setInterval(sendFrame, CAMERA_EVERY_MS);
}

function stopCamera() {
  clearInterval(timer);
  timer = null;
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("live").hidden = true;
  setStatus("camera off");
}

async function sendFrame() {
  const video = $("video");
  if (busy || !video.videoWidth) return;   // one frame in flight at a time
  busy = true;
  try {
    const grab = document.createElement("canvas");
    grab.width = video.videoWidth;
    grab.height = video.videoHeight;
    grab.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.85));
    const r = await fetch(photosUrl(false), { method: "POST", body: blob, headers: { "content-type": "image/jpeg" } });
    const body = await r.json();
    const overlay = $("overlay");
    overlay.width = video.clientWidth;
    overlay.height = video.clientHeight;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    const records = body.records || [];
    drawFaces(ctx, records, overlay.width / video.videoWidth);
    const face = records.find((x) => x.status === "ok");
    $("live-label").textContent = face ? `${face.class} ${face.probabilities[face.class].toFixed(2)}`
                                       : (records[0] ? records[0].status : body.error || "");
    $("live-bars").replaceChildren(face ? bars(face.probabilities, face.class) : document.createTextNode(""));
  } catch (err) {
    setStatus(`camera: ${err.message}`, true);
  } finally {
    busy = false;
  }
}

// -- wiring ----------------------------------------------------------------------------------------------
$("files").addEventListener("change", (e) => { sendPhotos(e.target.files); e.target.value = ""; });
$("model").addEventListener("change", showExplainers);
$("camera").addEventListener("click", startCamera);
$("stop").addEventListener("click", stopCamera);
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); sendPhotos(e.dataTransfer.files); });
loadModels().catch((err) => setStatus(`cannot list the models: ${err.message}`, true));
