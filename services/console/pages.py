"""The console's HTML: small static pages whose script calls the JSON API (no build
step, no CDN; hls.js is vendored under ``static/``)."""

from __future__ import annotations

LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>StreamWarden console: sign in</title></head><body>
<h1>StreamWarden console</h1>
<form method="post" action="/console/login">
<label>Moderator token <input id="token" name="token" type="password" required></label>
<button id="sign-in" type="submit">Sign in</button></form>
<p id="error">{error}</p></body></html>
"""

QUEUE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>StreamWarden: live flags</title>
<style>body{font-family:sans-serif;margin:1em}
.flag{display:flex;gap:1em;border-bottom:1px solid #ccc;padding:.5em 0}
.flag img{width:160px;height:90px;object-fit:cover;background:#eee}
.block{color:#b00}.review{color:#a60}button{margin-right:.3em}</style></head><body>
<h1>Live flags</h1><p id="status">connecting...</p><div id="queue"></div>
<script>
const queue = document.getElementById("queue");
const status = document.getElementById("status");
function text(tag, value, cls) {
  const node = document.createElement(tag); node.textContent = value;
  if (cls) node.className = cls; return node;
}
async function act(flag, action, row) {
  const reason = row.querySelector("input.reason").value || "console";
  const answer = await fetch("/v1/actions", {method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({flag_id: flag.id, action: action, reason: reason})});
  const result = row.querySelector(".result");
  result.textContent = answer.ok ? action + " done" : "failed: " + answer.status;
}
function show(flag) {
  const row = document.createElement("div");
  row.className = "flag"; row.dataset.flagId = flag.id; row.dataset.streamId = flag.stream_id;
  const picture = document.createElement("img");
  if (flag.snapshot_url) picture.src = flag.snapshot_url;
  row.appendChild(picture);
  const about = document.createElement("div");
  about.appendChild(text("div", flag.stream_id + " (host " + flag.host_id + ", provider "
    + flag.provider_id + ")", "stream"));
  about.appendChild(text("div", flag.decision + " " + flag.source + " " + flag.detected_at,
    flag.decision));
  about.appendChild(text("div", flag.text
    ? flag.text.category + " / " + flag.text.rule + ": " + flag.text.line
    : JSON.stringify(flag.scores || flag.chat || flag.report || {})));
  const reason = document.createElement("input");
  reason.className = "reason"; reason.placeholder = "reason"; about.appendChild(reason);
  for (const action of ["confirm", "dismiss", "block_stream", "blacklist_host"]) {
    const button = text("button", action.replace("_", " "), "action " + action);
    button.onclick = () => act(flag, action, row); about.appendChild(button);
  }
  if (flag.replay) {
    const link = text("a", "replay"); link.href = flag.replay; about.appendChild(link);
  }
  about.appendChild(text("span", "", "result"));
  row.appendChild(about);
  queue.prepend(row);
}
const source = new EventSource("/console/flags");
source.onopen = () => { status.textContent = "live"; };
source.onerror = () => { status.textContent = "reconnecting..."; };
source.onmessage = (event) => show(JSON.parse(event.data));
</script></body></html>
"""

REPLAY = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>StreamWarden: replay</title><script src="/console/static/hls.light.min.js"></script>
</head><body><h1>Replay</h1><video id="video" controls muted width="640"></video>
<p id="status"></p><script>
const playlist = new URLSearchParams(location.search).get("playlist");
const video = document.getElementById("video");
if (Hls.isSupported()) {
  const hls = new Hls(); hls.loadSource(playlist); hls.attachMedia(video);
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    document.getElementById("status").textContent = "loaded"; });
} else { video.src = playlist; }
</script></body></html>
"""
