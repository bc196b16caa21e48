#!/usr/bin/env node
// A real client for Sluice's end-to-end admission test: the official OpenAI SDK for Node.
//
//   node client.mjs chat       --base-url U --key K --model M [--stream] [--max-tokens N]
//   node client.mjs burst      --base-url U --key K --model M --count N --max-retries R
//   node client.mjs embeddings --base-url U --key K --model M
//   node client.mjs models     --base-url U --key K
//
// Every subcommand prints ONE JSON line to stdout saying what happened and exits 0, also when
// the call failed (that is an outcome to report: {"ok":false,"error":"<SDK error class>",
// "status":…,"code":…,"type":…}). It exits non-zero only when the script itself breaks.
//
// Each HTTP attempt the SDK makes goes through a wrapper around the global fetch that records
// its status, the retry-after / retry-after-ms headers and when it started; the line carries
// them as "attempts", so a caller sees the SDK's retries (and can count what crossed the wire).
// chat, embeddings and models default to --max-retries 0: one call, one attempt.

import OpenAI from "openai";
import { parseArgs } from "node:util";

const usage =
  "usage: node client.mjs chat|burst|embeddings|models --base-url U --key K " +
  "[--model M] [--stream] [--count N] [--max-retries R] [--max-tokens N] [--timeout-ms T]";

function fail(message) {
  process.stderr.write(`client.mjs: ${message}\n${usage}\n`);
  process.exit(2);
}

function intOption(values, name, fallback, min) {
  if (values[name] === undefined) return fallback;
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer >= ${min}`);
  return n;
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      "base-url": { type: "string" },
      key: { type: "string" },
      model: { type: "string" },
      stream: { type: "boolean", default: false },
      count: { type: "string" },
      "max-retries": { type: "string" },
      "max-tokens": { type: "string" },
      "timeout-ms": { type: "string" },
      prompt: { type: "string" },
    },
  });
} catch (e) {
  fail(e.message);
}
const { values, positionals } = parsed;
const command = positionals[0];
if (positionals.length !== 1 || !["chat", "burst", "embeddings", "models"].includes(command)) {
  fail("expected one subcommand");
}
if (!values["base-url"]) fail("--base-url is required");
if (values.key === undefined) fail("--key is required");
if (command !== "models" && !values.model) fail("--model is required");

const count = intOption(values, "count", 1, 1);
const maxRetries = intOption(values, "max-retries", 0, 0);
const maxTokens = intOption(values, "max-tokens", undefined, 0);
const timeoutMs = intOption(values, "timeout-ms", 20000, 1);
const prompt = values.prompt ?? "Say hello to the bump in the wire.";

// ------------------------------------------------------------------ observed attempts
const started = Date.now();
const attempts = [];

async function recordingFetch(url, init) {
  const attempt = { t_ms: Date.now() - started };
  attempts.push(attempt);
  try {
    const response = await globalThis.fetch(url, init);
    attempt.status = response.status;
    const retryAfter = response.headers.get("retry-after");
    const retryAfterMs = response.headers.get("retry-after-ms");
    if (retryAfter !== null) attempt.retry_after = retryAfter;
    if (retryAfterMs !== null) attempt.retry_after_ms = retryAfterMs;
    return response;
  } catch (e) {
    attempt.status = null;
    attempt.error = String(e?.cause?.code ?? e?.name ?? e);
    throw e;
  }
}

const client = new OpenAI({
  baseURL: values["base-url"],
  apiKey: values.key,
  maxRetries,
  timeout: timeoutMs,
  fetch: recordingFetch,
});

// ------------------------------------------------------------------ outcomes
function describeError(e) {
  // A connection that ends while a body is read surfaces from fetch as TypeError "terminated"
  // (the SDK does not wrap it): an outcome to report too.
  if (e instanceof TypeError && e.message === "terminated") {
    return { ok: false, error: "terminated", status: null, code: e.cause?.code ?? null,
             type: null, message: String(e.cause?.message ?? e.message) };
  }
  if (!(e instanceof OpenAI.APIError)) throw e; // not an API outcome: the script broke
  return {
    ok: false,
    error: e.constructor.name,
    status: e.status ?? null,
    code: e.code ?? null,
    type: e.type ?? null,
    message: e.message,
  };
}

function messages() {
  return [{ role: "user", content: prompt }];
}

async function chatOnce(stream) {
  const body = { model: values.model, messages: messages() };
  if (maxTokens !== undefined) body.max_tokens = maxTokens;
  if (!stream) {
    const { data, response } = await client.chat.completions.create(body).withResponse();
    return {
      ok: true,
      status: response.status,
      content: data.choices?.[0]?.message?.content ?? null,
      usage: data.usage ?? null,
    };
  }
  const { data: events, response } = await client.chat.completions
    .create({ ...body, stream: true, stream_options: { include_usage: true } })
    .withResponse();
  let content = "";
  let usage = null;
  let chunks = 0;
  try {
    for await (const chunk of events) {
      chunks += 1;
      content += chunk.choices?.[0]?.delta?.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
  } catch (e) {
    // The stream broke off (an SSE error event, say): what came before it is part of the outcome.
    return { ...describeError(e), stream: true, chunks, content };
  }
  return { ok: true, status: response.status, stream: true, chunks, content, usage };
}

async function run() {
  switch (command) {
    case "chat":
      try {
        return await chatOnce(values.stream);
      } catch (e) {
        return describeError(e);
      }
    case "burst": {
      let completed = 0;
      let failed = 0;
      const errors = [];
      for (let i = 0; i < count; i++) {
        try {
          await chatOnce(values.stream);
          completed += 1;
        } catch (e) {
          failed += 1;
          errors.push(describeError(e));
        }
      }
      return { completed, failed, errors };
    }
    case "embeddings":
      try {
        const { data, response } = await client.embeddings
          .create({ model: values.model, input: [prompt, "second input"] })
          .withResponse();
        return {
          ok: true,
          status: response.status,
          count: data.data.length,
          dimensions: data.data[0]?.embedding?.length ?? 0,
          usage: data.usage ?? null,
        };
      } catch (e) {
        return describeError(e);
      }
    case "models":
      try {
        const { data, response } = await client.models.list().withResponse();
        return { ok: true, status: response.status, models: data.data.map((m) => m.id) };
      } catch (e) {
        return describeError(e);
      }
  }
  throw new Error(`unhandled subcommand ${command}`);
}

const result = await run();
result.attempts = attempts;
result.elapsed_ms = Date.now() - started;
process.stdout.write(JSON.stringify(result) + "\n");
