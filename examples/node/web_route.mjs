// A web app's chat route that streams a completion to the browser, as plain text chunks.
// `POST` is a Next.js App Router handler as written (app/api/chat/route.js: export it and you are
// done); run this file with node and a tiny server mounts it at /api/chat next to a page that reads
// the stream: PORT=3000 node web_route.mjs, then open http://127.0.0.1:3000/.
// The browser never sees the Lockgate key: the server holds it.
import http from "node:http";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";

import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { streamText } from "ai";

const lockgate = createOpenAICompatible({
  name: "lockgate",
  baseURL: (process.env.LOCKGATE_URL ?? "http://127.0.0.1:4000") + "/v1",
  apiKey: process.env.LOCKGATE_KEY,
});

export async function POST(request) {
  const body = await request.json().catch(() => null);
  if (!Array.isArray(body?.messages)) {
    return Response.json({ error: "send {messages: [{role, content}, ...]}" }, { status: 400 });
  }
  const result = streamText({ model: lockgate("gpt-4o-mini"), messages: body.messages });
  return result.toTextStreamResponse(); // text/plain, one chunk per delta as the gateway streams it
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>Lockgate chat</title>
<form id="f"><input id="q" value="Tell me a story." size="60"><button>Send</button></form><pre id="out"></pre>
<script type="module">
document.getElementById("f").onsubmit = async (event) => {
  event.preventDefault();
  const out = document.getElementById("out");
  out.textContent = "";
  const messages = [{ role: "user", content: document.getElementById("q").value }];
  const response = await fetch("/api/chat", { method: "POST", body: JSON.stringify({ messages }) });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (let part = await reader.read(); !part.done; part = await reader.read()) out.textContent += part.value;
};
</script>`;

// Node's http server speaks IncomingMessage, the handler speaks web Request/Response: adapt both ways.
async function serve(req, res) {
  const url = new URL(req.url, `http://${req.headers.host}`);
  if (req.method === "GET" && url.pathname === "/") {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE);
    return;
  }
  if (req.method !== "POST" || url.pathname !== "/api/chat") {
    res.writeHead(404).end();
    return;
  }
  const request = new Request(url, { method: "POST", headers: req.headers, body: Readable.toWeb(req), duplex: "half" });
  const response = await POST(request);
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (response.body) Readable.fromWeb(response.body).pipe(res);
  else res.end();
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3000);
  http
    .createServer((req, res) =>
      serve(req, res).catch((error) => {
        console.error(error);
        if (!res.headersSent) res.writeHead(502);
        res.end();
      }),
    )
    .listen(port, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${port}/`));
}
