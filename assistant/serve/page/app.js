// The page of `assistant serve`: connects to the avatar over WebRTC, sends the microphone (echo-cancelled by the
// browser) and typed questions, shows the transcript and what the server is doing. It says when the server is
// loading, full or gone, and reconnects by itself.
//
// Query parameters: token=... (the access token; moved out of the address bar at once). For the tests and
// `assistant bench serve` only: test=NAME records what the page plays (the avatar's video and sound; and its
// microphone beside the avatar's sound) and uploads it with the page's connection statistics once
// `turns` (default 1) questions were heard and the last one answered, or `max_s` seconds have passed;
// ask=TEXT types a question; mic=0 keeps the microphone off.
"use strict";

const params = new URLSearchParams(location.search);
let token = params.get("token") || sessionStorage.getItem("assistant-serve-token") || "";
if (params.has("token")) {
  sessionStorage.setItem("assistant-serve-token", token);
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
}
const test = params.get("test");
const wantTurns = Number(params.get("turns") || 1);
const maxS = Number(params.get("max_s") || 90);

const $ = (id) => document.getElementById(id);
const ui = {
  video: $("avatar"), start: $("start"), status: $("status"), notice: $("notice"), talk: $("talk"),
  stop: $("stop"), reconnect: $("reconnect"), form: $("ask"), question: $("question"), send: $("send"),
  transcript: $("transcript"),
};

let pc = null, channel = null, sessionId = null, mic = null, micWanted = params.get("mic") !== "0";
let retryMs = 1000, fatal = false, state = "";
const replies = new Map();  // turn -> its <li>
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function show(text) { ui.status.textContent = text; }
function notify(text, level = "warning") {
  ui.notice.textContent = text;
  ui.notice.className = level === "error" ? "error" : "";
  ui.notice.hidden = !text;
}
function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = "Bearer " + token;
  return fetch(path, Object.assign({}, options, { headers }));
}
function controls(on) {
  for (const el of [ui.talk, ui.stop, ui.question, ui.send]) el.disabled = !on;
}

// ---- the server's state before connecting ----
async function waitUntilReady() {
  for (;;) {
    let r;
    try {
      r = await api("/api/status");
    } catch (e) {
      show("The server is gone (it does not answer); trying again…");
      await sleep(backoff());
      continue;
    }
    const body = await r.json().catch(() => ({}));
    if (r.status === 401 || r.status === 403) {
      fatal = true;
      show(body.message || "This server needs its access token.");
      return false;
    }
    if (body.state === "ready") return true;
    show(body.state === "failed" ? body.message : "The avatar is loading its models; this takes a minute…");
    await sleep(body.state === "failed" ? 10000 : 2000);
  }
}
function backoff() {
  const wait = retryMs;
  retryMs = Math.min(retryMs * 2, 30000);
  return wait;
}

// ---- connecting ----
async function connect() {
  ui.reconnect.hidden = true;
  if (!window.isSecureContext) {
    notify("This page is not on HTTPS, so the browser will not open the microphone: type your questions, " +
           "or ask the operator for the https:// address (docs/serve.md).");
    micWanted = false;
  }
  if (!(await waitUntilReady())) return;
  show("Connecting…");
  pc = new RTCPeerConnection();
  const audio = pc.addTransceiver("audio", { direction: "sendrecv" });
  pc.addTransceiver("video", { direction: "recvonly" });
  channel = pc.createDataChannel("chat");
  channel.onmessage = (e) => onMessage(JSON.parse(e.data));
  channel.onclose = () => { if (pc && !fatal) lost("The connection to the server was lost; reconnecting…"); };
  const remote = new MediaStream();
  pc.ontrack = (e) => {
    remote.addTrack(e.track);
    ui.video.srcObject = remote;
    ui.video.play().catch(() => { ui.start.hidden = false; });
  };
  pc.onconnectionstatechange = () => {
    if (pc && pc.connectionState === "connected") onConnected(audio.sender, remote);
    if (pc && pc.connectionState === "failed") lost("The connection to the server failed; reconnecting…");
  };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  let r, body;
  try {
    r = await api("/api/offer", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }),
    });
    body = await r.json();
  } catch (e) {
    return lost("The server is gone (it does not answer); trying again…");
  }
  if (!r.ok) return refused(r.status, body);
  sessionId = body.session;
  await pc.setRemoteDescription({ type: "answer", sdp: body.sdp });
}

function gathered(peer) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (peer.iceGatheringState === "complete") resolve(); };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
}

function refused(status, body) {
  teardown();
  show(body.message || `The server refused the connection (HTTP ${status}).`);
  if (status === 401 || status === 403 || status === 400) { fatal = true; return; }
  setTimeout(connect, status === 503 ? 3000 : 10000);  // loading or full: the page retries by itself
}

function lost(text) {
  teardown();
  show(text);
  setTimeout(connect, backoff());
}

function teardown() {
  controls(false);
  clearInterval(pinger);
  if (channel) channel.onclose = null;
  if (pc) { pc.onconnectionstatechange = null; pc.close(); }
  pc = channel = sessionId = null;
  if (mic) { mic.stop(); mic = null; }
}

let pinger = null;
async function onConnected(sender, remote) {
  retryMs = 1000;
  clearInterval(pinger);
  pinger = setInterval(() => send({ type: "ping" }), 2000);  // conversation.PING_S: the server sees the page is there
  controls(true);
  notify("");
  if (micWanted) await openMicrophone(sender);
  ui.talk.textContent = mic && mic.enabled ? "Microphone: on" : "Microphone: off";
  if (test) startRecording(remote);
  if (params.get("ask")) ask(params.get("ask"));
}

async function openMicrophone(sender) {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    mic = stream.getAudioTracks()[0];
    await sender.replaceTrack(mic);
  } catch (e) {
    notify(`The microphone could not be opened (${e.name}); type your questions instead.`);
  }
}

// ---- messages from the server ----
function onMessage(m) {
  if (m.type === "state") {
    state = m.state;
    show(m.text);
  } else if (m.type === "heard") {
    line("you", m.text);
  } else if (m.type === "reply") {
    let li = replies.get(m.turn);
    if (!li) { li = line("avatar", ""); replies.set(m.turn, li); }
    li.textContent = (li.textContent + " " + m.text).trim();
  } else if (m.type === "notice" || m.type === "error") {
    notify(m.text, m.type === "error" ? "error" : m.level);
  } else if (m.type === "closed") {
    closed(m.reason);
  }
  if (test) record.messages.push(Object.assign({ t_ms: performance.now() }, m));
  if (test && m.type === "heard") { record.heard += 1; record.answered = false; }
  if (test && m.type === "turn_done") record.answered = true;  // the last question heard has its reply
}

function closed(reason) {
  teardown();
  if (/nothing was said/.test(reason)) {
    show(`The session was closed: ${reason}.`);
    ui.reconnect.hidden = false;
  } else {
    lost(`The session was closed (${reason}); reconnecting…`);
  }
}

function line(who, text) {
  const li = document.createElement("li");
  li.className = who;
  li.textContent = text;
  ui.transcript.appendChild(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
}

function send(message) {
  if (channel && channel.readyState === "open") channel.send(JSON.stringify(message));
}

function ask(text) {
  text = text.trim();
  if (!text) return;
  line("you", text);
  send({ type: "ask", text });
}

// ---- the controls ----
ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  ask(ui.question.value);
  ui.question.value = "";
});
ui.stop.addEventListener("click", () => send({ type: "stop" }));
ui.talk.addEventListener("click", () => {
  if (!mic) return notify("No microphone: type your questions.");
  mic.enabled = !mic.enabled;
  send({ type: "mute", muted: !mic.enabled });
  ui.talk.textContent = mic.enabled ? "Microphone: on" : "Microphone: off";
});
ui.reconnect.addEventListener("click", () => { fatal = false; connect(); });
ui.start.addEventListener("click", () => { ui.start.hidden = true; ui.video.play(); });
addEventListener("pagehide", () => {
  if (sessionId) navigator.sendBeacon(`/api/session/${sessionId}/close` + (token ? `?token=${token}` : ""));
});

// ---- the test hook: record what the page plays, upload it with the connection's statistics ----
const record = { messages: [], heard: 0, answered: false, started_ms: null };

function startRecording(remote) {
  // Two recordings on the page's clock: what it plays as it gets it (the avatar's video and sound: lip sync,
  // what is said), and its microphone (left) beside the avatar's sound (right) mixed through Web Audio, both
  // channels through the same path, for the time from the question's end to the reply's first sound.
  const ctx = new AudioContext({ sampleRate: 48000 });
  const merger = ctx.createChannelMerger(2);
  if (mic) ctx.createMediaStreamSource(new MediaStream([mic])).connect(merger, 0, 0);
  ctx.createMediaStreamSource(new MediaStream(remote.getAudioTracks())).connect(merger, 0, 1);
  const out = ctx.createMediaStreamDestination();
  out.channelCount = 2;
  merger.connect(out);
  const recorders = [
    recorder(new MediaStream(remote.getTracks()), "video/webm;codecs=vp8,opus", `${test}.webm`),
    recorder(out.stream, "audio/webm;codecs=opus", `${test}-mix.webm`),
  ];
  record.started_ms = performance.now();
  watchPlayout();
  const deadline = record.started_ms + maxS * 1000;
  const timer = setInterval(async () => {
    const over = record.heard >= wantTurns && record.answered && state === "listening";
    if (!over && performance.now() <= deadline) return;
    clearInterval(timer);
    record.timed_out = !over;
    await sleep(over ? 1500 : 0);
    await Promise.all(recorders.map((r) => r.finish()));
    await upload();
  }, 100);
}

// When each frame is shown (requestVideoFrameCallback) and how open the mouth is in it (the share of the mouth
// box, `mouth=x,y,w,h` in video pixels, darker than `dark`), and when each packet of sound is played with its level
// (getSynchronizationSources): lip sync as the person at the page sees and hears it, on performance.now().
function watchPlayout() {
  const box = (params.get("mouth") || "").split(",").map(Number);
  const dark = Number(params.get("dark") || 70);
  const canvas = document.createElement("canvas");
  const g = canvas.getContext("2d", { willReadFrequently: true });
  record.mouth = [];
  record.sound = [];
  const onFrame = (now, meta) => {
    if (box.length === 4) {
      const [x, y, w, h] = box;
      canvas.width = w; canvas.height = h;
      g.drawImage(ui.video, x, y, w, h, 0, 0, w, h);
      const px = g.getImageData(0, 0, w, h).data;
      let n = 0;
      for (let i = 0; i < px.length; i += 4) if (0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2] < dark) n++;
      record.mouth.push([meta.expectedDisplayTime, n / (w * h)]);
    }
    if (record.mouth) ui.video.requestVideoFrameCallback(onFrame);
  };
  ui.video.requestVideoFrameCallback(onFrame);
  const receiver = pc.getReceivers().find((r) => r.track && r.track.kind === "audio");
  let last = null;
  record.sound_timer = setInterval(() => {
    for (const s of receiver ? receiver.getSynchronizationSources() : []) {
      if (s.timestamp === last) continue;
      last = s.timestamp;
      // Chrome gives wall-clock milliseconds here: put them on performance.now()'s clock.
      const t = s.timestamp > 1e12 ? s.timestamp - performance.timeOrigin : s.timestamp;
      record.sound.push([t, s.audioLevel || 0, s.rtpTimestamp]);
    }
  }, 5);
}

function recorder(stream, mimeType, name) {
  const r = new MediaRecorder(stream, { mimeType });
  const chunks = [];
  r.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  const stopped = new Promise((resolve) => { r.onstop = resolve; });
  r.start(1000);
  return {
    finish: async () => {
      r.stop();
      await stopped;
      await api(`/api/upload/${name}`, { method: "POST", body: new Blob(chunks, { type: mimeType }) });
    },
  };
}

async function upload() {
  clearInterval(record.sound_timer);
  record.stats = [];
  if (pc) (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" || s.type === "candidate-pair" && s.state === "succeeded") record.stats.push(s);
  });
  record.session = sessionId;
  record.uploaded_ms = performance.now();
  await api(`/api/upload/${test}.json`, { method: "POST", body: JSON.stringify(record) });
  document.title = "uploaded";
}

connect();
