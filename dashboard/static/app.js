// prow-dashboard's only script: filters that apply on change, a running job's live log
// (server-sent events; the browser reconnects and resumes after the last line it has), and the
// end of a long stored log loaded in place. Every page works without it.
"use strict";

function autosubmit() {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  document.addEventListener("keydown", (e) => {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
    if (e.key === "/" && !typing) {
      const box = document.getElementById("f-job") || document.getElementById("q");
      if (box) { e.preventDefault(); box.focus(); }
    }
  });
}

function lineElement(number, html) {
  const div = document.createElement("div");
  div.className = "l";
  div.id = "L" + number;
  const a = document.createElement("a");
  a.className = "n";
  a.href = "#L" + number;
  a.setAttribute("aria-label", "line " + number);
  a.textContent = number;
  const t = document.createElement("span");
  t.className = "t";
  t.innerHTML = html; // escaped on the server: only the ANSI colours' spans are markup
  div.append(a, t);
  return div;
}

function live() {
  const log = document.querySelector("[data-live]");
  if (!log || !window.EventSource) return;
  const status = document.getElementById("livestate");
  const say = (text) => { if (status) status.textContent = text; };
  const following = () => window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
  const source = new EventSource(log.dataset.live);
  const put = (batch) => {
    const follow = following();
    for (const [number, html] of batch) {
      const old = document.getElementById("L" + number);
      const fresh = lineElement(number, html);
      if (old) old.replaceWith(fresh); else log.append(fresh);
    }
    if (follow) window.scrollTo(0, document.body.scrollHeight);
  };
  source.addEventListener("open", () => say("● live"));
  source.addEventListener("lines", (e) => { say("● live"); put(JSON.parse(e.data)); });
  source.addEventListener("partial", (e) => put(JSON.parse(e.data)));
  source.addEventListener("waiting", (e) => say("waiting: " + e.data));
  source.addEventListener("end", (e) => {
    source.close();
    say("the run ended: " + e.data + " (reload for its stored log and artifacts)");
    const state = document.getElementById("state");
    if (state && e.data !== "gone") { state.textContent = e.data; state.className = "state " + e.data; }
  });
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.CLOSED) say("reconnecting…");
  });
}

// A long stored log's last lines: the page shows its first lines at once and fetches the end
// right after (reading to the end takes a moment on a large log); the link stays for pages
// without the script.
function fragments() {
  for (const link of document.querySelectorAll("a[data-fragment]")) {
    const load = async () => {
      const target = document.getElementById("tail");
      link.textContent = "Loading the last lines…";
      try {
        const response = await fetch(link.href);
        target.innerHTML = await response.text();
        link.remove();
      } catch (err) {
        link.textContent = "The last lines could not be loaded: " + err;
      }
    };
    link.addEventListener("click", (e) => { e.preventDefault(); load(); });
    if (link.hasAttribute("data-auto")) load();
  }
}

document.addEventListener("DOMContentLoaded", () => { autosubmit(); live(); fragments(); });
