"use strict";

// ---------------------------------------------------------------------------------------
// The shop's page.
// ---------------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

// The order on screen; every button below the flows acts on it and on nothing else.
let current = null;

const FLOWS = {
  card: { payMethod: "CARD" },
  "virtual-account": { payMethod: "VIRTUAL_ACCOUNT" },
  // A forged browser changes the amount on its way to PortOne; only the server can tell.
  tampered: { payMethod: "CARD", totalAmount: 100 },
  declined: { payMethod: "CARD", cardDeclined: true },
};

async function pay(flow) {
  show(null);
  say("busy", "Creating the order…");
  // 1. The shop's server creates the order with the amount it expects.
  const created = await post("/sandbox/checkout");
  if (!created.ok) return say("error", problemText(created));
  show(created.body);
  record("POST /sandbox/checkout → 201", `the shop's server made the order: ${money(created.body.amount)}`);
  await attempt(created.body.checkout, flow);
}

// Another try after a failed one: the same order, the same paymentId.
async function retry() {
  const timeline = await look(current.orderId);
  if (timeline === null) return say("error", "The order could not be read.");
  record("another try", `the same paymentId ${timeline.order.paymentId}`);
  await attempt(timeline.order.checkout, FLOWS.card);
}

async function attempt(checkout, flow) {
  // 2. The browser pays with the order's checkout parameters.
  paymentWindow.mobile = $("mobile").checked;
  paymentWindow.manual = $("confirm-manual").checked;
  paymentWindow.cardDeclined = Boolean(flow.cardDeclined);
  say("busy", "Paying in PortOne's payment window…");
  const request = paymentRequest(checkout, flow);
  if (paymentWindow.mobile) record("PortOne.requestPayment → redirect", `to ${request.redirectUrl}`);
  const response = await PortOne.requestPayment(request);
  if (response === undefined) return leave();
  record("PortOne.requestPayment → resolved", responseText(response, flow));
  if (response.code !== undefined) {
    say(...failure(response.code, response.message));
    followUp(current.orderId); // not awaited: the buttons are free again meanwhile
    return;
  }
  // 3. The shop's server (this service) verifies the payment with PortOne; with a
  // paymentToken it first confirms it there, on the order's terms.
  say("busy", "Verifying the payment with PortOne…");
  const { paymentId, txId, paymentToken } = response;
  let completed = await complete(paymentId, txId, paymentToken);
  if (completed.body?.code === "PAYMENT_NOT_PAID" && completed.body.portoneStatus === "FAILED") {
    // PortOne's window paid, but the service may answer from its read of the failed try
    // before it for up to a second; it reads afresh after that.
    await sleep(1000);
    completed = await complete(paymentId, txId, paymentToken);
  }
  const [state, text] = completed.ok ? verdict(completed.body) : problemVerdict(completed.body);
  say(state, text);
  if (state === "paid" && paymentToken !== undefined) {
    note("PortOne charged the card only when the service confirmed the payment with the order's amount "
      + "(its …/confirm among PortOne's calls below).");
  }
  await aftermath(state);
}

async function complete(paymentId, txId, paymentToken) {
  const completed = await post("/payments/complete", { paymentId, txId, paymentToken });
  const token = paymentToken === undefined ? "" : " with paymentToken";
  record(`POST /payments/complete${token} → ${completed.status}`, answerText(completed));
  return completed;
}

function responseText(response, flow) {
  if (response.code !== undefined) return `code ${response.code}: ${response.message}`;
  const forged = flow.totalAmount === undefined ? "" : `; totalAmount forged to ${money(flow.totalAmount)}`;
  const token = response.paymentToken === undefined ? "" : "; paymentToken: authenticated, nothing charged yet";
  return `txId ${response.txId}${forged}${token}`;
}

function answerText(answer) {
  const body = answer.body ?? {};
  if (answer.ok) return `order ${body.status}`;
  return [body.code, body.reason ?? body.portoneStatus].filter(Boolean).join(" ");
}

function paymentRequest(checkout, flow) {
  const request = { ...checkout, payMethod: flow.payMethod };
  // The redirect flow needs redirectUrl. The service puts it in `checkout` when it knows its
  // public address (PUBLIC_BASE_URL); this page is served by the service, so it knows too.
  request.redirectUrl ??= `${location.origin}/payments/return`;
  if (flow.totalAmount !== undefined) request.totalAmount = flow.totalAmount;
  return request;
}

// Back from the redirect flow: the service verified the payment at /payments/return and
// sent the browser here with orderId, paymentId and status (code and message on failure).
async function landed(query) {
  show({ orderId: query.get("orderId"), paymentId: query.get("paymentId") });
  const timeline = await look(current.orderId);
  if (timeline === null) return say("error", "The order of this payment could not be read.");
  const status = query.get("status");
  // A payment PortOne refused to confirm is left as it was: PENDING, nothing charged.
  const refused = status === "PENDING" ? refusedConfirmation(timeline) : undefined;
  record(`back from GET /payments/return → status ${status}`, query.get("code") ?? refused?.refusal ?? "");
  const [state, text] = status === "FAILED"
    ? failure(query.get("code"), query.get("message"))
    : refused ? notConfirmed(refused.refusal) : verdict({ ...timeline.order, status });
  say(state, `Back from PortOne's payment window (redirect). ${text}`);
  await aftermath(state);
}

// What follows a verdict: the compensation of a rejected payment, and late webhooks.
async function aftermath(state) {
  const { orderId } = current;
  if (state === "rejected") {
    const refunded = await until(orderId, (t) => t.order.refundedAmount > 0);
    const amount = refunded && money(refunded.order.refundedAmount);
    note(refunded
      ? `Compensated: the service cancelled the payment at PortOne; ${amount} went back to the customer. `
        + "On a channel with manual confirmation PortOne refuses such a payment before charging anything."
      : "The compensation is still under way; the reconciler retries it until PortOne confirms.");
  }
  followUp(orderId);
}

async function deposit() {
  const { orderId, paymentId } = current;
  say("busy", "The customer transfers the money; PortOne tells the service by webhook…");
  await control(paymentId, "deposit");
  record("the customer deposited", "sandbox control: POST …/deposit");
  const paid = await until(orderId, (t) => t.order.status === "PAID");
  if (paid) {
    say("paid", `Deposit received: paid ${money(paid.order.amount)}. `
      + "The service learned it from PortOne's webhook, with no browser involved.");
  } else {
    say("waiting", "PortOne took the deposit; the service has not heard of it yet (the reconciler will).");
  }
  followUp(orderId);
}

async function refund(settlesLater) {
  const { orderId, paymentId } = current;
  const input = $("refund-amount");
  const amount = Number(input.value);
  if (!Number.isInteger(amount) || amount < 1 || amount > Number(input.max)) {
    return say("failed", `Enter a whole amount between 1 and ${money(Number(input.max))}.`);
  }
  if (settlesLater) {
    // PortOne answers this payment's next cancellation REQUESTED, to settle it later.
    await control(paymentId, "cancellations/next", { status: "REQUESTED" });
    record("PortOne will hold the next cancellation", "sandbox control: …/cancellations/next REQUESTED");
  }
  say("busy", `Refunding ${money(amount)}…`);
  const answer = await post(`/sandbox/orders/${encodeURIComponent(orderId)}/refund`, { amount });
  record(`POST /sandbox/orders/…/refund → ${answer.status}`, `the shop's server asked ${money(amount)}`);
  say(...refundVerdict(answer, amount));
  followUp(orderId);
}

async function settle(status) {
  const { orderId, paymentId } = current;
  const held = heldCancellation((await look(orderId))?.portonePayment);
  if (held === undefined) return say("failed", "PortOne holds no refund of this order.");
  await control(paymentId, `cancellations/${encodeURIComponent(held.id)}/settle`, { status });
  record(`PortOne settled cancellation ${held.id}`, `sandbox control: ${status}`);
  if (status === "FAILED") {
    // PortOne sends no webhook for a cancellation that failed; the reconciler finds it.
    return say("refund-held", "PortOne failed the refund, and sends no webhook for that: the service "
      + "still shows it REQUESTED. Press \"Run the reconciler now\"; its pass re-reads every refund left REQUESTED.");
  }
  say("busy", "PortOne settled its cancellation; its webhook tells the service…");
  const settled = await until(orderId, (t) => t.order.refunds.every((r) => r.status !== "REQUESTED"));
  if (settled) {
    say("refunded", `PortOne settled the refund: ${money(held.totalAmount)} went back to the customer. `
      + `The order is ${settled.order.status}.`);
  } else {
    say("refund-held", "PortOne settled the refund; the service has not heard of it yet (the reconciler will).");
  }
  followUp(orderId);
}

// The reconciler runs every RECONCILE_INTERVAL_SECONDS (60 by default); this runs a pass now.
async function reconcile() {
  const { orderId } = current;
  say("busy", "Running a reconciler pass…");
  const answer = await post("/sandbox/reconcile");
  if (!answer.ok) return say("error", problemText(answer));
  const pass = answer.body;
  record(`POST /sandbox/reconcile → ${answer.status}`,
    `checked ${pass.checked}, changed ${pass.changed}, settled ${pass.settled}, closed ${pass.closed}`);
  if (pass.skipped) return say("reconciled", "Another reconciler pass was running; this one stepped aside.");
  say("reconciled", `The reconciler re-read ${pass.checked} payment(s) from PortOne, changed ${pass.changed} `
    + `order(s), found ${pass.settled} refund(s) or compensation(s) PortOne had settled, and closed `
    + `${pass.closed} order(s) at their expiry. `
    + "It looks only where something may have been missed (a payment still open, a refund still "
    + "REQUESTED, a change PortOne lists, an order past its expiresAt); what it saw of this order shows "
    + "as \"Reconciler\" in the timeline.");
  await look(orderId);
  followUp(orderId);
}

// ---- Verdicts: what a person reads, from the service's answer (never from its prose). ----

const REJECTIONS = {
  AMOUNT_MISMATCH: "the amount paid is not the order's amount",
  CURRENCY_MISMATCH: "it was paid in another currency than the order's",
  STORE_MISMATCH: "it was paid to another store",
  TEST_CHANNEL: "it was paid on a test channel",
};

function verdict(order) {
  const amount = money(order.amount, order.currency);
  switch (order.status) {
    case "PAID":
      return ["paid", `Paid ${amount}: PortOne has the payment, and the service verified it against the order.`];
    case "AWAITING_DEPOSIT":
      return ["waiting", `Transfer ${amount} to ${account(order.virtualAccount)}.\nWaiting for your deposit…`];
    case "REJECTED":
      return rejected(order.rejectionReason);
    default:
      return ["pending", `Not verified yet: the order is ${order.status}. PortOne's webhook or the reconciler settles it.`];
  }
}

function problemVerdict(problem) {
  switch (problem?.code) {
    case "PAYMENT_REJECTED":
      return rejected(problem.reason);
    case "PAYMENT_NOT_CONFIRMED":
      return notConfirmed(problem.reason);
    case "ORDER_CLOSED":
      return ["failed", "The order is closed (cancelled, or past its expiry): the service asked PortOne to "
        + "confirm nothing, and nothing was charged."];
    case "PAYMENT_NOT_PAID":
      return ["failed", `Not paid: PortOne shows the payment ${problem.portoneStatus ?? "nowhere"}.`];
    case "PORTONE_UNAVAILABLE":
      return ["pending", "PortOne did not answer, so nothing was decided; its webhook or the reconciler will."];
    default:
      return ["error", problemText({ body: problem })];
  }
}

function rejected(reason) {
  return ["rejected", `Payment rejected (${reason}): ${whyRejected(reason)}. The service cancels it at PortOne; nothing ships.`];
}

const whyRejected = (reason) => REJECTIONS[reason] ?? "it failed verification";

const REFUSALS = {
  INFORMATION_MISMATCH: "the payment window authorized another amount, currency or test flag than the order's",
  INVALID_PAYMENT_TOKEN: "the paymentToken is not the one PortOne gave for this payment",
};

function notConfirmed(reason) {
  return ["not-confirmed", `PortOne refused to confirm the payment (${reason}): `
    + `${REFUSALS[reason] ?? "PortOne gave its own reason"}. Nothing was charged, so nothing is refunded; `
    + "the order stays open: \"Try again with another card\" pays it.\n"
    + "On a channel with automatic confirmation the same payment is charged first, then rejected and refunded."];
}

// The service's last confirmation of the payment at PortOne, when PortOne refused it.
function refusedConfirmation({ portoneCalls }) {
  const last = portoneCalls.filter((c) => c.method === "POST" && c.path.endsWith("/confirm")).at(-1);
  return last?.refusal === undefined ? undefined : last;
}

function failure(code, message) {
  const reason = inEnglish(message, DECLINED);
  return ["failed", `Payment failed (${code}): ${reason}\nNothing was charged; the order stays open: `
    + "\"Try again with another card\" pays it."];
}

function refundVerdict(answer, amount) {
  if (answer.status === 200) {
    const status = answer.body.status;
    return ["refunded", `Refunded ${money(amount)}: PortOne's cancellation SUCCEEDED. The order is ${status}.`];
  }
  if (answer.status === 202) {
    return ["refund-held", `PortOne holds the refund of ${money(amount)} (REQUESTED); the money moves once `
      + "PortOne settles it. Press \"PortOne settles the refund\"."];
  }
  const refused = {
    REFUND_FAILED: "PortOne refused the refund; it is recorded FAILED.",
    REFUND_EXCEEDS_BALANCE: "The refund is larger than what is left to refund.",
    ORDER_NOT_REFUNDABLE: "Only a paid order can be refunded.",
  }[answer.body?.code];
  return ["failed", refused ?? problemText(answer)];
}

function problemText(answer) {
  const problem = answer.body ?? {};
  const { status = answer.status, code = "", title = "an error" } = problem;
  return `The service answered ${status} ${code}: ${title}.`;
}


// ---- One step at a time: a second click while a payment runs made a second order. ----

let leaving = false; // the redirect flow is taking the browser away

function step(action) {
  return async () => {
    if (document.body.dataset.busy === "true") return;
    setBusy(true);
    try {
      await action();
    } catch (error) {
      say("error", `Something went wrong: ${error.message}`);
    } finally {
      if (!leaving) setBusy(false);
    }
  };
}

function setBusy(busy) {
  document.body.dataset.busy = String(busy);
  for (const actions of document.querySelectorAll("fieldset.actions")) actions.disabled = busy;
}

function leave() {
  leaving = true;
  say("busy", "Leaving for PortOne's payment window…");
}

// ---- Small helpers. ----

function say(state, text) {
  $("result").dataset.state = state;
  $("verdict").textContent = text;
  $("note").textContent = "";
}

function note(text) {
  $("note").textContent = text;
}

async function control(paymentId, action, body) {
  const answer = await post(`/sandbox/payments/${encodeURIComponent(paymentId)}/${action}`, body);
  if (!answer.ok) throw new Error(`the emulated PortOne refused (${answer.body?.code ?? answer.status})`);
  return answer.body;
}

async function call(method, url, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const text = await response.text();
  return { ok: response.ok, status: response.status, body: text ? JSON.parse(text) : null };
}
const post = (url, body) => call("POST", url, body);
const get = (url) => call("GET", url);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function el(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

// Dates, times and amounts in the reader's own locale ("3 Dec 2026, 11:02", "₩10,000").
const DATE = new Intl.DateTimeFormat(undefined, {
  day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit",
});
const CLOCK = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const date = (at) => DATE.format(new Date(at));
const clock = (at) => CLOCK.format(new Date(at));
// An amount in the order's currency unless another is given.
const money = (amount, currency = current?.currency ?? "KRW") =>
  new Intl.NumberFormat(undefined, { style: "currency", currency }).format(amount);

function account(virtualAccount) {
  const { bank, accountNumber, remitteeName, expiresAt } = virtualAccount;
  const due = expiresAt ? ` by ${date(expiresAt)}` : "";
  return `${bank ?? "the bank"} ${accountNumber}${remitteeName ? ` (${remitteeName})` : ""}${due}`;
}

// PortOne's own words may be Korean (older sandbox data had Korean failure reasons); the
// page is English only.
const HANGUL = /[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]/;
function inEnglish(text, fallback) {
  return text && !HANGUL.test(text) ? text : fallback;
}

// ---- Wiring. ----

for (const button of document.querySelectorAll("button[data-flow]")) {
  button.addEventListener("click", step(() => pay(FLOWS[button.dataset.flow])));
}
$("retry").addEventListener("click", step(retry));
$("deposit").addEventListener("click", step(deposit));
$("refund").addEventListener("click", step(() => refund(false)));
$("refund-later").addEventListener("click", step(() => refund(true)));
$("settle").addEventListener("click", step(() => settle("SUCCEEDED")));
$("settle-failed").addEventListener("click", step(() => settle("FAILED")));
$("reconcile").addEventListener("click", step(reconcile));
$("refresh").addEventListener("click", () => current && look(current.orderId));

// The switches outlive the trip to the payment window and back.
$("mobile").checked = sessionStorage.getItem("mobile") === "true";
$("mobile").addEventListener("change", () => sessionStorage.setItem("mobile", String($("mobile").checked)));
$("confirm-manual").checked = sessionStorage.getItem("confirm") === "MANUAL";
for (const channel of document.querySelectorAll('input[name="confirm"]')) {
  channel.addEventListener("change", () => sessionStorage.setItem("confirm", channel.value));
}

// Coming back with the Back button restores the page as it was left: busy, leaving.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) {
    leaving = false;
    setBusy(false);
  }
});

const query = new URLSearchParams(location.search);
if (query.has("orderId")) {
  // Read once: a reload must not land a second time, nor bring an old order back.
  history.replaceState(null, "", location.pathname);
  step(() => landed(query))();
}
