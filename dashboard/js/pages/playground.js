// Playground: a multi-turn chat with any model through the OpenAI API — system prompt, temperature, max
// tokens and stop strings — streamed with a stop button, the time to first token and tokens/s of each
// reply, and side by side: a second model answering the same conversation at the same time.
import { api, el, openAIBase } from "../api.js";

let controllers = [];

export async function render(main) {
  const data = await api("/api/models");
  const chatModels = data.models.filter((m) => m.model.kind === "chat").map((m) => m.model.id);
  const options = () => chatModels.map((id) => el("option", { value: id }, id));
  const modelA = el("select", { id: "pg-model", "aria-label": "model" }, options());
  const modelB = el("select", { id: "pg-model-b", "aria-label": "second model", disabled: true }, options());
  if (chatModels.length > 1) modelB.value = chatModels[1];
  const compare = el("input", { type: "checkbox", id: "pg-compare", onchange: () => { modelB.disabled = !compare.checked; layout(); } });
  const system = el("textarea", { id: "pg-system", style: "min-height:48px", placeholder: "system prompt (optional)", "aria-label": "system prompt" });
  const temperature = el("input", { id: "pg-temperature", type: "number", min: "0", max: "2", step: "0.1", value: "0.7", "aria-label": "temperature" });
  const maxTokens = el("input", { id: "pg-max-tokens", type: "number", min: "1", step: "1", value: "256", "aria-label": "max tokens" });
  const stop = el("input", { id: "pg-stop-strings", placeholder: "stop strings, comma separated", "aria-label": "stop strings" });
  const input = el("textarea", { id: "pg-input", style: "min-height:70px", "aria-label": "message",
                                 onkeydown: (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send.click(); } });
  input.value = "Tell me a short fact about llamas.";
  const send = el("button", { class: "primary", id: "pg-send", onclick: run }, "Send");
  const stopButton = el("button", { id: "pg-stop", disabled: true, onclick: () => controllers.forEach((c) => c.abort()) }, "Stop");
  const clear = el("button", { id: "pg-clear", onclick: () => { for (const c of columns) c.reset(); } }, "New chat");
  const threads = el("div", { class: "threads", id: "pg-threads" });

  const field = (label, control) => el("label", { class: "field" }, el("span", { class: "muted" }, label), control);
  main.append(
    el("div", { class: "card" },
      el("div", { class: "toolbar" }, field("Model", modelA), el("label", { for: "pg-compare" }, compare, " side by side with"), field("Second model", modelB)),
      field("System prompt", system),
      el("div", { class: "toolbar" }, field("Temperature", temperature), field("Max tokens", maxTokens), field("Stop", stop))),
    threads,
    el("div", { class: "card" }, input, el("div", { class: "toolbar" }, send, stopButton, clear, el("span", { class: "muted" }, "Ctrl+Enter sends"))));

  const columns = [column("a", modelA), column("b", modelB)];
  function layout() {
    threads.classList.toggle("two", compare.checked);
    columns[1].node.hidden = !compare.checked;
  }
  threads.append(...columns.map((c) => c.node));
  layout();

  async function run() {
    const text = input.value.trim();
    if (!text) return;
    send.disabled = true;
    stopButton.disabled = false;
    const active = compare.checked ? columns : [columns[0]];
    controllers = active.map(() => new AbortController());
    const settings = {
      temperature: Number(temperature.value), max_tokens: Number(maxTokens.value),
      ...(stop.value.trim() ? { stop: stop.value.split(",").map((s) => s.trim()).filter(Boolean) } : {}),
    };
    await Promise.all(active.map((c, i) => c.turn(text, system.value.trim(), settings, controllers[i].signal)));
    input.value = "";
    send.disabled = false;
    stopButton.disabled = true;
  }
}

// One conversation with one model: its messages, and its replies as they stream.
function column(name, select) {
  const log = el("div", { class: "thread-log", id: `pg-thread-${name}`, "aria-live": "polite" });
  const title = el("h2", {}, select.value);
  select.addEventListener("change", () => { title.textContent = select.value; });
  const node = el("div", { class: "card thread", "data-column": name }, title, log);
  let messages = [];
  return {
    node,
    reset() { messages = []; log.replaceChildren(); },
    async turn(text, system, settings, signal) {
      title.textContent = select.value;
      messages.push({ role: "user", content: text });
      log.append(el("div", { class: "msg user" }, text));
      const reply = el("div", { class: "msg assistant" });
      const stats = el("div", { class: "muted stats" }, "waiting…");
      if (name === "a") {
        // The latest reply of the first column keeps the ids the page has always had.
        for (const id of ["pg-output", "pg-stats"]) document.getElementById(id)?.removeAttribute("id");
        reply.id = "pg-output";
        stats.id = "pg-stats";
      }
      log.append(reply, stats);
      const start = performance.now();
      let first = null, pieces = 0, usage = null, finish = null;
      const body = { model: select.value, stream: true, stream_options: { include_usage: true }, ...settings,
                     messages: [...(system ? [{ role: "system", content: system }] : []), ...messages] };
      const show = () => {
        const tokens = usage ? usage.completion_tokens : pieces;
        const seconds = first === null ? 0 : (performance.now() - first) / 1000;
        stats.textContent = first === null ? "waiting…" :
          `first token ${(first - start).toFixed(0)} ms · ${tokens} tokens · ${seconds > 0 && tokens > 1 ? (tokens / seconds).toFixed(1) : "–"} tokens/s${finish ? ` · ${finish}` : ""}`;
      };
      try {
        const response = await fetch(`${await openAIBase()}/chat/completions`, {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
        });
        if (!response.ok) throw new Error((await response.json()).error.message);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const event = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            for (const line of event.split("\n")) {
              if (!line.startsWith("data: ") || line.startsWith("data: [DONE]")) continue;
              const chunk = JSON.parse(line.slice(6));
              if (chunk.error) throw new Error(chunk.error.message);
              if (chunk.usage) usage = chunk.usage;
              const choice = chunk.choices && chunk.choices[0];
              if (choice && choice.finish_reason) finish = choice.finish_reason;
              const piece = choice && choice.delta && choice.delta.content;
              if (piece) {
                if (first === null) first = performance.now();
                pieces++;
                reply.textContent += piece;
              }
            }
          }
          show();
        }
        show();
      } catch (e) {
        if (e.name === "AbortError") { finish = "stopped"; show(); stats.dataset.stopped = "true"; }
        else {
          reply.textContent += `${reply.textContent ? "\n" : ""}error: ${e.message}`;
          reply.classList.add("bad");
          messages.pop();  // a failed turn is not part of the conversation
          stats.dataset.done = "true";
          return;
        }
      }
      messages.push({ role: "assistant", content: reply.textContent });
      stats.dataset.done = "true";
    },
  };
}

export function leave() {
  controllers.forEach((c) => c.abort());
  controllers = [];
}
