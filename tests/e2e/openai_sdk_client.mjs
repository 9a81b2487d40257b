// The official OpenAI Node SDK (npm package "openai", 4.x or 5.x) as a client
// of openelm_server's OpenAI-compatible HTTP API. Run by
// scripts/test-http-api.sh against a server on a tiny random checkpoint:
//
//   OPENAI_BASE_URL=http://HOST:PORT/v1 OPENAI_API_KEY=KEY \
//   OPENAI_SDK_MODULE=/path/to/node_modules/openai/index.mjs \
//     node tests/e2e/openai_sdk_client.mjs
//
// OPENAI_SDK_MODULE (a path or file: URL; ESM imports ignore NODE_PATH) is
// where the SDK was installed; without it, a plain import('openai'). Prints
// one PASS/FAIL line per check and stops at the first failure (exit code 1).
// The model is random, so the checks are about shapes and counts, not text;
// ignore_eos (a server extension the SDK passes through) pins the counts.

import { pathToFileURL } from 'node:url';

function sdkSpecifier() {
  const where = process.env.OPENAI_SDK_MODULE;
  if (!where) return 'openai';
  return where.startsWith('file:') ? where : pathToFileURL(where).href;
}

class CheckError extends Error {}

function assert(condition, message) {
  if (!condition) throw new CheckError(message);
}

function show(value) {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.slice(0, 600);
}

async function main() {
  const baseURL = process.env.OPENAI_BASE_URL;
  const apiKey = process.env.OPENAI_API_KEY;
  if (!baseURL || !apiKey) {
    console.error('openai_sdk_client: set OPENAI_BASE_URL and OPENAI_API_KEY');
    return 2;
  }
  const sdk = await import(sdkSpecifier());
  const OpenAI = sdk.default;
  const options = { baseURL, maxRetries: 0, timeout: 60_000 };
  const client = new OpenAI({ ...options, apiKey });
  let model = '';

  const checks = [
    ['models.list() lists one model', async () => {
      const page = await client.models.list();
      assert(page.data.length === 1, `data: ${show(page.data)}`);
      model = page.data[0].id;
      assert(typeof model === 'string' && model !== '', `id: ${show(model)}`);
      return `model ${model}`;
    }],

    ['chat.completions.create stream', async () => {
      const stream = await client.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'Hi' }],
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: 8,
        temperature: 0,
        ignore_eos: true,
      });
      let chunks = 0;
      let contentDeltas = 0;
      let text = '';
      let role = null;
      const finishReasons = [];
      let usage = null;
      for await (const chunk of stream) {
        ++chunks;
        assert(chunk.object === 'chat.completion.chunk', `object: ${show(chunk)}`);
        for (const choice of chunk.choices) {
          if (choice.delta?.role) role = choice.delta.role;
          if (choice.delta?.content) {
            ++contentDeltas;
            text += choice.delta.content;
          }
          if (choice.finish_reason) finishReasons.push(choice.finish_reason);
        }
        if (chunk.usage) usage = chunk.usage;
      }
      assert(role === 'assistant', `role ${show(role)}`);
      assert(contentDeltas >= 1, `no content delta in ${chunks} chunks`);
      assert(finishReasons.length === 1 && finishReasons[0] === 'length',
             `finish_reasons ${show(finishReasons)}`);
      assert(usage !== null && usage.completion_tokens === 8, `usage ${show(usage)}`);
      return `${chunks} chunks, ${contentDeltas} content deltas, text ${show(text)}`;
    }],

    ['completions.create with ignore_eos', async () => {
      const completion = await client.completions.create({
        model,
        prompt: 'Hello',
        max_tokens: 6,
        temperature: 0,
        ignore_eos: true,
      });
      assert(completion.object === 'text_completion', `object ${show(completion.object)}`);
      assert(completion.choices.length === 1, `choices ${show(completion.choices)}`);
      assert(typeof completion.choices[0].text === 'string', show(completion.choices[0]));
      assert(completion.choices[0].finish_reason === 'length', show(completion.choices[0]));
      assert(completion.usage?.completion_tokens === 6, `usage ${show(completion.usage)}`);
      return `text ${show(completion.choices[0].text)}`;
    }],

    ['chat.completions.create logprobs, top_logprobs 2', async () => {
      const completion = await client.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'Hi' }],
        max_tokens: 4,
        temperature: 0,
        ignore_eos: true,
        logprobs: true,
        top_logprobs: 2,
      });
      const choice = completion.choices[0];
      assert(choice.message.role === 'assistant', show(choice.message));
      const content = choice.logprobs?.content;
      assert(Array.isArray(content) && content.length === 4, `logprobs ${show(choice.logprobs)}`);
      for (const entry of content) {
        assert(typeof entry.token === 'string', `token ${show(entry)}`);
        assert(typeof entry.logprob === 'number' && entry.logprob <= 0, `logprob ${show(entry)}`);
        assert(entry.top_logprobs.length === 2, `top_logprobs ${show(entry)}`);
        const [first, second] = entry.top_logprobs;
        assert(first.logprob <= 0 && second.logprob <= first.logprob,
               `top_logprobs not in descending order ${show(entry)}`);
        // Greedy: the chosen token is the most likely one.
        assert(Math.abs(entry.logprob - first.logprob) < 1e-3,
               `greedy token is not the top alternative ${show(entry)}`);
      }
      return `tokens ${show(content.map((e) => e.token))}`;
    }],

    ['completions.create logprobs 2', async () => {
      const completion = await client.completions.create({
        model,
        prompt: 'Hello',
        max_tokens: 3,
        temperature: 0,
        ignore_eos: true,
        logprobs: 2,
      });
      const logprobs = completion.choices[0].logprobs;
      assert(logprobs && Array.isArray(logprobs.tokens) && Array.isArray(logprobs.token_logprobs) &&
             Array.isArray(logprobs.top_logprobs), `logprobs ${show(logprobs)}`);
      assert(logprobs.tokens.length === 3 && logprobs.token_logprobs.length === 3 &&
             logprobs.top_logprobs.length === 3, `lengths ${show(logprobs)}`);
      for (let i = 0; i < 3; ++i) {
        assert(typeof logprobs.tokens[i] === 'string', `tokens ${show(logprobs)}`);
        assert(typeof logprobs.token_logprobs[i] === 'number' && logprobs.token_logprobs[i] <= 0,
               `token_logprobs ${show(logprobs)}`);
        const top = logprobs.top_logprobs[i];
        // A {token text: logprob} map; two alternatives can share a text.
        const n = top && typeof top === 'object' ? Object.keys(top).length : 0;
        assert(n >= 1 && n <= 2 && Object.values(top).every((v) => v <= 0),
               `top_logprobs[${i}] ${show(top)}`);
      }
      return `tokens ${show(logprobs.tokens)}`;
    }],

    ['temperature 5 -> APIError 400, param temperature', async () => {
      try {
        const r = await client.completions.create({ model, prompt: 'Hello', max_tokens: 2,
                                                     temperature: 5 });
        throw new CheckError(`no error: ${show(r)}`);
      } catch (err) {
        if (err instanceof CheckError) throw err;
        assert(err instanceof OpenAI.APIError, `not an APIError: ${err}`);
        assert(err.status === 400, `status ${err.status}: ${err.message}`);
        assert(err instanceof OpenAI.BadRequestError, `not a BadRequestError: ${err.constructor.name}`);
        const param = err.param ?? err.error?.param;
        assert(param === 'temperature', `param ${show(param)}: ${err.message}`);
        return `${err.constructor.name}: ${err.message}`;
      }
    }],

    ['wrong API key -> 401 AuthenticationError', async () => {
      const wrong = new OpenAI({ ...options, apiKey: 'sk-wrong-key' });
      try {
        const r = await wrong.chat.completions.create({
          model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
        throw new CheckError(`no error: ${show(r)}`);
      } catch (err) {
        if (err instanceof CheckError) throw err;
        assert(err instanceof OpenAI.APIError, `not an APIError: ${err}`);
        assert(err.status === 401, `status ${err.status}: ${err.message}`);
        assert(err instanceof OpenAI.AuthenticationError,
               `not an AuthenticationError: ${err.constructor.name}`);
        return `${err.constructor.name}: ${err.message}`;
      }
    }],
  ];

  for (const [name, check] of checks) {
    try {
      const detail = await check();
      console.log(`PASS: sdk ${name}${detail ? ` (${detail})` : ''}`);
    } catch (err) {
      const what = err instanceof CheckError ? err.message
                                             : `${err?.constructor?.name}: ${err?.message}`;
      console.log(`FAIL: sdk ${name}: ${what}`);
      return 1;
    }
  }
  return 0;
}

process.exitCode = await main();
