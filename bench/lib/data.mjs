// Seeded, realistic benchmark inputs: support-chat text drawn from a few hundred English words
// with Zipf-like frequencies, mixed with names, numbers, order ids, URLs and typos, so gzip and
// JSON see the entropy of real conversations rather than a few repeated words.

/** mulberry32: a small, fast, seeded PRNG returning floats in [0, 1). */
export function rng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Roughly in frequency order: the Zipf weights follow this rank.
const WORDS = `the to and a of i you it is in that for my this have be on with can not your
we are was do if but at so me as will what or there how please just an they get account would
all one from about help thanks know like when out up need order any no did by time yes thank
has could see here try now been then our payment use more which support email should also some
issue make new work password back problem after still again it's i'm don't working only able
right other well check card app update team other first sure why into error number let same way
login page click settings via its because phone already their them look hi hello sorry hear
refund subscription plan billing charge charged invoice cancel renew upgrade downgrade trial
free premium monthly annual price discount code coupon receipt statement bank transfer delivery
shipping package tracking delayed arrived missing damaged return exchange replacement warehouse
address street city postal country profile username verify verification link expired reset
secure two factor authentication device browser chrome firefox safari android iphone laptop
desktop screen button menu option feature notification message chat history download upload
file attachment photo document export import sync backup restore data privacy delete remove
close open start stop install uninstall reinstall restart reboot cache cookies clear network
connection wifi slow fast crash freeze loading blank white black red green status pending
approved declined failed successful complete completed processing received sent forwarded
escalate escalated manager agent ticket case reference customer service hours today tomorrow
yesterday week month year morning afternoon evening minutes seconds soon later while during
before since until between through around under over without within across against along
really very quite much many few little lot lots every each another both either neither
understand explain describe confirm provide share send give take keep find show tell ask say
said went got made saw came thought wanted looked used tried found gave told asked seemed felt
left called kept began showed heard played ran moved lived believed brought happened wrote
sat stood lost paid met included continued set learned changed led considered appeared bought
waited served died sent expected built stayed fell cut reached killed remained suggested
raised passed sold required reported decided pulled weekend holiday business personal family
company office home school store shop market product item items quantity size color model
version latest previous current older newer better worse best worst great good bad fine
okay awesome perfect wonderful terrible annoying frustrating confusing helpful useful simple
easy hard difficult possible impossible available unavailable visible hidden enabled disabled
automatically manually immediately recently usually sometimes never always often again`.split(/\s+/).filter(Boolean);

const NAMES = `Alice Bob Carla Dmitri Elena Farid Grace Hiro Ines Jonas Kavya Liam Mei Nadia Omar
Priya Quentin Rosa Sven Tariq Uma Victor Wen Ximena Yusuf Zoe Mateo Aisha Lukas Sofia Chen
Amara Björn Zoë José Łukasz`.split(/\s+/).filter(Boolean);
const PRODUCTS = ["Pro", "Basic", "Team", "Enterprise", "Starter", "Plus", "Max", "Lite"];
const DOMAINS = ["example.com", "mail.example.org", "shop.example.net", "help.example.io"];
const MODELS = ["@cf/meta/llama-3.1-8b-instruct", "@cf/mistral/mistral-7b-instruct-v0.2"];

/** Cumulative Zipf weights (s ≈ 1.07) over WORDS. */
const ZIPF_CUMULATIVE = (() => {
  let sum = 0;
  const cumulative = WORDS.map((_, rank) => (sum += 1 / Math.pow(rank + 1, 1.07)));
  return cumulative.map((value) => value / sum);
})();

function zipfWord(random) {
  const target = random();
  let low = 0;
  let high = ZIPF_CUMULATIVE.length - 1;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (ZIPF_CUMULATIVE[middle] < target) low = middle + 1;
    else high = middle;
  }
  return WORDS[low];
}

const pick = (random, list) => list[Math.floor(random() * list.length)];

/** A typo: a dropped, doubled or swapped letter. */
function typo(random, word) {
  if (word.length < 3) return word;
  const at = 1 + Math.floor(random() * (word.length - 2));
  const kind = random();
  if (kind < 0.33) return word.slice(0, at) + word.slice(at + 1);
  if (kind < 0.66) return word.slice(0, at) + word[at] + word.slice(at);
  return word.slice(0, at - 1) + word[at] + word[at - 1] + word.slice(at + 1);
}

/** One token: mostly Zipf words, sometimes a name, number, order id, price, email or URL. */
function token(random) {
  const roll = random();
  if (roll < 0.9) {
    const word = zipfWord(random);
    return random() < 0.03 ? typo(random, word) : word;
  }
  if (roll < 0.93) return pick(random, NAMES);
  if (roll < 0.955) return String(Math.floor(random() * 1000));
  if (roll < 0.97) return `#${Math.floor(1e7 + random() * 9e7)}`;
  if (roll < 0.98) return `$${(random() * 500).toFixed(2)}`;
  if (roll < 0.985) return `${pick(random, NAMES).toLowerCase()}${Math.floor(random() * 100)}@${pick(random, DOMAINS)}`;
  if (roll < 0.99) return `https://${pick(random, DOMAINS)}/help/${Math.floor(random() * 5000)}`;
  return `${pick(random, PRODUCTS)} ${Math.floor(random() * 12) + 1}.${Math.floor(random() * 10)}`;
}

/** Text of about `words` words, in sentences with capitals and punctuation. */
export function chatText(random, words) {
  const parts = [];
  let sentence = 0;
  for (let i = 0; i < words; i++) {
    let word = token(random);
    if (sentence === 0) word = word[0].toUpperCase() + word.slice(1);
    sentence++;
    const end = sentence > 4 && random() < 0.12;
    if (end) {
      word += pick(random, [".", ".", ".", "?", "!"]);
      sentence = 0;
    } else if (random() < 0.05) {
      word += ",";
    }
    parts.push(word);
  }
  const text = parts.join(" ");
  return /[.?!]$/.test(text) ? text : text + ".";
}

/** A conversation of `messageCount` messages (user and assistant turns). */
export function conversation(random, sessionId, userId, messageCount, startMs) {
  const messages = [];
  let time = startMs;
  for (let i = 0; i < messageCount; i++) {
    const role = i % 2 === 0 ? "user" : "assistant";
    const words = role === "user" ? 8 + Math.floor(random() * 35) : 30 + Math.floor(random() * 120);
    time += 2000 + Math.floor(random() * 60000);
    const message = { id: `msg_${sessionId}_${i}`, sessionId, role, content: chatText(random, words), timestamp: time };
    if (role === "assistant") {
      message.metadata = { model: pick(random, MODELS), tokens: words * 1.3 | 0, latencyMs: 200 + Math.floor(random() * 2000) };
    }
    messages.push(message);
  }
  const memory = {
    sessionId,
    messages,
    summary: chatText(random, 25),
    context: { locale: pick(random, ["en-US", "en-GB", "de-DE", "fr-FR"]), plan: pick(random, PRODUCTS), tickets: [Math.floor(random() * 1e6)] },
  };
  const session = {
    id: sessionId,
    userId,
    status: "active",
    createdAt: startMs,
    lastActivity: time,
    metadata: { channel: pick(random, ["web", "email", "mobile"]), agentVersion: "2.3.1" },
  };
  return { memory, session };
}

/** Rewrites a conversation for another session id (and user), as a fresh deep copy. */
export function withSession(template, sessionId, userId) {
  const memory = { ...template.memory, sessionId, messages: template.memory.messages.map((message) => ({ ...message, sessionId })) };
  const session = { ...template.session, id: sessionId, userId };
  return { memory, session };
}

/** A unit-length embedding whose values are float32 numbers, as embedding models return them. */
export function embedding(random, dims) {
  const values = new Float32Array(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    // Sum of uniforms: roughly normal components.
    const value = random() + random() + random() - 1.5;
    values[i] = value;
    norm += value * value;
  }
  const scale = 1 / Math.sqrt(norm);
  for (let i = 0; i < dims; i++) values[i] *= scale;
  return Array.from(values);
}

/** A support query and a realistic cached answer for it. */
export function queryAndResult(random, i) {
  const query = `${chatText(random, 6 + Math.floor(random() * 10))} (${i})`;
  const result = {
    answer: chatText(random, 60 + Math.floor(random() * 80)),
    sources: [`https://${pick(random, DOMAINS)}/kb/${Math.floor(random() * 900)}`, `https://${pick(random, DOMAINS)}/kb/${Math.floor(random() * 900)}`],
    confidence: Math.round(random() * 1000) / 1000,
    model: pick(random, MODELS),
  };
  return { query, result };
}

/** A short cache key text, like the ones hashed for every embedding lookup. */
export function shortKey(random, i) {
  return `${chatText(random, 3 + Math.floor(random() * 5))} ${i}`;
}

const TOOLS = ["searchKnowledgeBase", "lookupOrder", "createTicket"];

/** The input and output of one tool call, shaped like what a support agent's tools exchange. */
function toolCall(random, name) {
  if (name === "searchKnowledgeBase") {
    return {
      input: { query: chatText(random, 5 + Math.floor(random() * 8)), limit: 3 },
      output: {
        results: Array.from({ length: 3 }, () => ({
          url: `https://${pick(random, DOMAINS)}/kb/${Math.floor(random() * 900)}`,
          title: chatText(random, 4 + Math.floor(random() * 5)),
          snippet: chatText(random, 40 + Math.floor(random() * 60)),
          score: Math.round(random() * 1000) / 1000,
        })),
      },
    };
  }
  if (name === "lookupOrder") {
    const id = `#${Math.floor(1e7 + random() * 9e7)}`;
    return {
      input: { orderId: id },
      output: { orderId: id, status: pick(random, ["shipped", "pending", "delivered", "returned"]), total: Math.round(random() * 50000) / 100, items: Array.from({ length: 1 + Math.floor(random() * 3) }, () => ({ sku: `SKU-${Math.floor(random() * 1e5)}`, name: `${pick(random, PRODUCTS)} ${chatText(random, 2)}`, quantity: 1 + Math.floor(random() * 3) })) },
    };
  }
  return { input: { subject: chatText(random, 6), body: chatText(random, 30 + Math.floor(random() * 40)), priority: pick(random, ["low", "normal", "high"]) }, output: { ticketId: `T-${Math.floor(random() * 1e6)}`, queue: "billing" } };
}

/**
 * `count` AI SDK UIMessages alternating user and assistant: user turns are one text part;
 * assistant turns a step-start, a reasoning part, usually a tool call (output-available, a few
 * in output-error) and its step, then the answer's text part, sometimes a source-url. Metadata
 * carries createdAt, and on assistant turns the model and token counts.
 */
export function uiMessages(random, count, startMs) {
  const messages = [];
  let time = startMs;
  for (let i = 0; i < count; i++) {
    time += 2000 + Math.floor(random() * 60000);
    if (i % 2 === 0) {
      messages.push({ id: `ui_${i}`, role: "user", metadata: { createdAt: time }, parts: [{ type: "text", text: chatText(random, 8 + Math.floor(random() * 35)) }] });
      continue;
    }
    const parts = [{ type: "step-start" }, { type: "reasoning", text: chatText(random, 20 + Math.floor(random() * 80)), state: "done" }];
    if (random() < 0.7) {
      const name = pick(random, TOOLS);
      const { input, output } = toolCall(random, name);
      const toolCallId = `call_${Math.floor(random() * 1e12).toString(36)}`;
      parts.push(random() < 0.1
        ? { type: `tool-${name}`, toolCallId, state: "output-error", input, errorText: `Tool ${name} failed: ${chatText(random, 8)}` }
        : { type: `tool-${name}`, toolCallId, state: "output-available", input, output });
      parts.push({ type: "step-start" });
    }
    parts.push({ type: "text", text: chatText(random, 30 + Math.floor(random() * 120)), state: "done" });
    if (random() < 0.3) parts.push({ type: "source-url", sourceId: `src_${i}`, url: `https://${pick(random, DOMAINS)}/kb/${Math.floor(random() * 900)}`, title: chatText(random, 5) });
    messages.push({ id: `ui_${i}`, role: "assistant", metadata: { createdAt: time, model: pick(random, MODELS), totalTokens: 200 + Math.floor(random() * 2000) }, parts });
  }
  return messages;
}
