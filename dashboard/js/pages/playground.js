// Playground: chat with any model through the OpenAI API, tokens shown as they stream in, with the
// measured time to first token and tokens/s.
import { api, el, openAIBase } from "../api.js";

export async function render(main) {
  const data = await api("/api/models");
  const model = el("select", { id: "pg-model" }, data.models.filter((m) => m.model.kind === "chat").map((m) => el("option", { value: m.model.id }, m.model.id)));
  const input = el("textarea", { id: "pg-input", style: "min-height:80px" });
  input.value = "Tell me a short fact about llamas.";
  const output = el("div", { class: "card", id: "pg-output" });
  const stats = el("div", { class: "muted", id: "pg-stats" });
  const send = el("button", { class: "primary", id: "pg-send", onclick: run }, "Send");
  main.append(el("div", { class: "card" }, el("div", { class: "row" }, model, send), input, stats), el("div", { style: "margin-top:14px" }, output));

  async function run() {
    send.disabled = true;
    output.textContent = "";
    stats.textContent = "waiting…";
    const start = performance.now();
    let first = null, tokens = 0;
    try {
      const response = await fetch(`${await openAIBase()}/chat/completions`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model: model.value, stream: true, messages: [{ role: "user", content: input.value }], max_tokens: 256 }),
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
            const text = chunk.choices && chunk.choices[0] && chunk.choices[0].delta && chunk.choices[0].delta.content;
            if (text) {
              if (first === null) first = performance.now();
              tokens++;
              output.textContent += text;
              const seconds = (performance.now() - first) / 1000;
              stats.textContent = `first token ${(first - start).toFixed(0)} ms · ${tokens} tokens · ${seconds > 0 ? (tokens / seconds).toFixed(1) : "–"} tokens/s`;
            }
          }
        }
      }
      stats.dataset.done = "true";
    } catch (e) {
      output.textContent = `error: ${e.message}`;
    }
    send.disabled = false;
  }
}
