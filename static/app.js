// forgehand dashboard: confirmations, live refresh of the task list, live transcript.
"use strict";

document.addEventListener("submit", (event) => {
  const message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});

function pollLive(element) {
  const url = element.getAttribute("data-live");
  let last = null;
  const refresh = async () => {
    if (document.hidden) return;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!response.ok || response.redirected) return;
      const html = await response.text();
      // Unchanged content is left alone so that keyboard focus stays where it is.
      if (html !== last) { element.innerHTML = html; last = html; }
    } catch (_) { /* offline for a moment: the next tick tries again */ }
  };
  setInterval(refresh, 2000);
}

function placeEntries(container, html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  const note = container.querySelector(".empty-note");
  if (note) note.remove();
  for (const node of Array.from(template.content.children)) {
    const id = node.getAttribute("data-for");
    const call = id ? container.querySelector(`details[data-tool-id="${CSS.escape(id)}"]`) : null;
    if (call) {
      call.querySelector(".tool-output").replaceChildren(...node.childNodes);
      if (node.classList.contains("error")) call.classList.add("error");
    } else {
      container.appendChild(node);
    }
  }
}

function streamTranscript(container) {
  const source = new EventSource(container.getAttribute("data-stream"));
  source.addEventListener("entries", (event) => placeEntries(container, event.data));
  source.addEventListener("status", () => { source.close(); window.location.reload(); });
}

document.querySelectorAll("[data-live]").forEach(pollLive);
document.querySelectorAll("[data-stream]").forEach(streamTranscript);
