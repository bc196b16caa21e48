#!/usr/bin/env node
// The official OpenAI SDK as the client of Sluice's live integrity test
// (tests/e2e/integrity_test.sh): what an application built on it would show its user.
//
//   node integrity_client.mjs chat|responses --base-url U --key K --model M [--stream] [--n N]
//        [--answer SHAPE] [--secret private|public] [--case NAME] [--timeout-ms T]
//
// --answer, --secret and --case become the x-si-answer, x-si-secret and x-si-case headers the
// FastAPI host (tests/e2e/fastapi_host.py) reads. Prints ONE JSON line and exits 0, also when
// the call failed (an outcome: "error" names the SDK error class):
//   {"ok", "status", "error", "message", "texts": {NAME: text}, "events"}
// "texts" holds everything the SDK surfaced as text: per choice its content, refusal,
// reasoning_content and each tool call's arguments (streamed: the deltas of each joined in
// order, as an application accumulates them), the Responses API's output_text and the deltas of
// each streamed event type joined, and the error message of a failed call. A caller checks them
// for the secret. Exits non-zero only when the script itself breaks.

import OpenAI from "openai";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "base-url": { type: "string" },
    key: { type: "string" },
    model: { type: "string", default: "small-1" },
    stream: { type: "boolean", default: false },
    n: { type: "string" },
    answer: { type: "string" },
    secret: { type: "string" },
    case: { type: "string" },
    "timeout-ms": { type: "string", default: "20000" },
  },
});
const command = positionals[0];
if (positionals.length !== 1 || !["chat", "responses"].includes(command) ||
    !values["base-url"] || values.key === undefined) {
  process.stderr.write("usage: node integrity_client.mjs chat|responses --base-url U --key K ...\n");
  process.exit(2);
}

const headers = {};
if (values.answer) headers["x-si-answer"] = values.answer;
if (values.secret) headers["x-si-secret"] = values.secret;
if (values.case) headers["x-si-case"] = values.case;
const client = new OpenAI({
  baseURL: values["base-url"],
  apiKey: values.key,
  maxRetries: 0,
  timeout: Number(values["timeout-ms"]),
  defaultHeaders: headers,
});

const texts = {};
let events = 0;
function add(name, piece) {
  if (typeof piece !== "string" || piece === "") return;
  texts[name] = (texts[name] ?? "") + piece;
}

function addMessage(prefix, m) {
  if (!m) return;
  add(`${prefix}.content`, typeof m.content === "string" ? m.content : undefined);
  add(`${prefix}.refusal`, m.refusal);
  add(`${prefix}.reasoning_content`, m.reasoning_content);
  add(`${prefix}.reasoning`, m.reasoning);
  for (const [i, call] of (m.tool_calls ?? []).entries()) {
    add(`${prefix}.tool_calls[${call.index ?? i}].arguments`, call.function?.arguments);
  }
}

async function chat() {
  const body = {
    model: values.model,
    messages: [{ role: "user", content: "Say hello to the bump in the wire." }],
  };
  if (values.n) body.n = Number(values.n);
  if (!values.stream) {
    const { data, response } = await client.chat.completions.create(body).withResponse();
    if (typeof data === "string") add("body", data); // not labelled JSON: the SDK hands the text
    for (const c of data?.choices ?? []) addMessage(`choices[${c.index}].message`, c.message);
    return response.status;
  }
  const { data: stream, response } = await client.chat.completions
    .create({ ...body, stream: true })
    .withResponse();
  for await (const chunk of stream) {
    events += 1;
    for (const c of chunk.choices ?? []) addMessage(`choices[${c.index}].delta`, c.delta);
  }
  return response.status;
}

async function responses() {
  const body = { model: values.model, input: "Say hello to the bump in the wire." };
  if (!values.stream) {
    const { data, response } = await client.responses.create(body).withResponse();
    if (typeof data === "string") add("body", data);
    add("output_text", data.output_text);
    for (const [i, item] of (data.output ?? []).entries()) {
      for (const [j, part] of (item.content ?? []).entries()) add(`output[${i}].content[${j}].text`, part.text);
    }
    return response.status;
  }
  const { data: stream, response } = await client.responses
    .create({ ...body, stream: true })
    .withResponse();
  for await (const event of stream) {
    events += 1;
    add(`${event.type}`, event.delta);
  }
  return response.status;
}

const result = { ok: false, status: null, error: null, message: null };
let printed = false;
function print() {
  if (printed) return;
  printed = true;
  result.texts = texts;
  result.events = events;
  process.stdout.write(JSON.stringify(result) + "\n");
}
// A connection reset in the middle of a body can leave the SDK's promise unsettled (node-fetch's
// body stream fails with no one listening): the event loop empties and node would exit silently.
// That is an outcome too: the application got nothing.
process.on("beforeExit", () => {
  if (!printed) {
    result.error = "Unsettled";
    result.message = "the call never settled (the connection ended mid-body)";
    print();
  }
});
try {
  result.status = await (command === "chat" ? chat() : responses());
  result.ok = true;
} catch (e) {
  if (e instanceof OpenAI.APIError) {
    result.error = e.constructor.name;
    result.status = e.status ?? null;
    result.message = e.message;
    add("error.message", e.message);
  } else {
    // A connection reset or ended mid-body (node-fetch's FetchError, "terminated"), a body that
    // is not JSON: outcomes too. Its message is what the application would show.
    result.error = e?.name ?? String(e);
    result.message = String(e?.message ?? e);
    add("error.message", result.message);
  }
}
print();
