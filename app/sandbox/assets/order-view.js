"use strict";

// ---- Showing the order: its status, facts, timeline and PortOne's calls. ----

// Which order is on screen (null: none); a new one also hides the last one's buttons.
function show(order) {
  current = order && { orderId: order.orderId, paymentId: order.paymentId, currency: order.currency };
  $("order").hidden = order === null;
  for (const id of ["retry", "deposit", "settle", "settle-failed", "refunding", "refunds-block", "no-order-events"]) {
    $(id).hidden = true;
  }
  if (order === null) return;
  $("order-id").textContent = order.orderId;
  setStatus(order.status ?? "");
  for (const id of ["order-facts", "refunds", "timeline", "portone-calls"]) $(id).replaceChildren();
  $("refreshed").textContent = "";
}

async function look(orderId) {
  const answer = await get(`/sandbox/orders/${encodeURIComponent(orderId)}`);
  if (!answer.ok) return null;
  // A later flow may have put another order on screen meanwhile.
  if (current?.orderId !== orderId) return null;
  render(answer.body);
  return answer.body;
}

function render(timeline) {
  const { order, portonePayment } = timeline;
  current.currency = order.currency;
  setStatus(order.status);
  renderFacts(order, portonePayment);
  renderRefunds(order.refunds);
  renderActions(order, portonePayment);
  $("timeline").replaceChildren(...timelineEntries(timeline).map(entryItem));
  $("no-order-events").hidden = timeline.orderEvents.length > 0;
  $("portone-calls").replaceChildren(...timeline.portoneCalls.map(callItem));
  $("refreshed").textContent = `refreshed ${clock(new Date())}`;
}

function setStatus(status) {
  $("order-status").textContent = status;
  $("order-status").dataset.status = status;
}

function renderFacts(order, payment) {
  const facts = [
    ["Product", order.orderName],
    ["Amount", money(order.amount)],
    ["Created", date(order.createdAt)],
    ["Paid", order.paidAt && date(order.paidAt)],
    ["Virtual account", order.virtualAccount && account(order.virtualAccount)],
    ["Rejected", order.rejectionReason && `${order.rejectionReason}: ${whyRejected(order.rejectionReason)}`],
    ["Refunded", order.refundedAmount > 0 && money(order.refundedAmount)],
    ["PortOne shows", payment && portoneSummary(payment)],
  ].filter(([, value]) => value);
  const items = facts.flatMap(([name, value]) => [el("dt", {}, name), el("dd", { "data-fact": name }, value)]);
  $("order-facts").replaceChildren(...items);
}

function renderRefunds(refunds) {
  $("refunds-block").hidden = refunds.length === 0;
  $("refunds").replaceChildren(...refunds.map((r) => el("li", { "data-status": r.status },
    `${money(r.amount)} ${r.status}, asked ${date(r.requestedAt)}`,
    r.settledAt ? `, settled ${date(r.settledAt)}` : "")));
}

function renderActions(order, payment) {
  // PortOne takes another attempt on a paymentId whose last one FAILED, or that it never
  // charged (READY: a confirmation it refused).
  $("retry").hidden = order.status !== "PENDING" || !["FAILED", "READY"].includes(payment?.status);
  $("deposit").hidden = order.status !== "AWAITING_DEPOSIT";
  $("settle").hidden = $("settle-failed").hidden = heldCancellation(payment) === undefined;
  const held = order.refunds.filter((r) => r.status === "REQUESTED");
  const left = order.amount - order.refundedAmount - held.reduce((sum, r) => sum + r.amount, 0);
  $("refunding").hidden = !["PAID", "PARTIALLY_REFUNDED"].includes(order.status) || left <= 0;
  offerRefund(order.orderId, left);
}

// Proposes what is left to refund, without overwriting an amount being typed.
function offerRefund(orderId, left) {
  const input = $("refund-amount");
  const offer = `${orderId}:${left}`;
  if (input.dataset.offer === offer) return;
  input.dataset.offer = offer;
  input.max = left;
  input.value = left;
}

function heldCancellation(payment) {
  return payment?.cancellations?.find((c) => c.status === "REQUESTED");
}

function portoneSummary(payment) {
  const cancellations = (payment.cancellations ?? [])
    .filter((c) => c.totalAmount > 0)
    .map((c) => `cancellation of ${money(c.totalAmount)} ${c.status}`);
  return [payment.status, ...cancellations].join("; ");
}

const SOURCES = {
  page: "This page",
  complete: "Browser completion",
  webhook: "Webhook from PortOne",
  reconcile: "Reconciler",
  compensation: "Compensation",
  refund: "Refund",
  "order-event": "Order event for the shop",
};

// This page's steps, the order's history (each look the service took at the payment) and
// its order events, oldest first.
function timelineEntries({ order, history, orderEvents }) {
  const looks = history.map((entry) => ({
    at: entry.at,
    source: entry.source,
    change: entry.fromStatus === entry.toStatus
      ? `${entry.toStatus} (unchanged)`
      : `${entry.fromStatus ?? "new"} → ${entry.toStatus}`,
    detail: lookDetail(entry),
  }));
  const events = orderEvents.map((event) => ({
    at: event.createdAt,
    source: "order-event",
    change: event.type,
    detail: `delivery: ${event.state}`,
  }));
  const entries = [...steps(order.orderId), ...looks, ...events];
  return entries.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
}

function lookDetail(entry) {
  const said = inEnglish(entry.detail, "PortOne gave its reason in Korean");
  const status = entry.portoneStatus;
  const portone = status && !said?.includes(status) ? `PortOne: ${status}` : null;
  return [portone, said].filter(Boolean).join(" · ");
}

// This page's own steps, by order; kept for the tab, so they outlive the redirect flow's
// trip to the payment window and back.
function steps(orderId) {
  return JSON.parse(sessionStorage.getItem(`steps:${orderId}`) ?? "[]");
}

function record(change, detail) {
  const { orderId } = current;
  const step = { at: new Date().toISOString(), source: "page", change, detail };
  sessionStorage.setItem(`steps:${orderId}`, JSON.stringify([...steps(orderId), step]));
}

function entryItem(entry) {
  return el("li", { "data-source": entry.source },
    el("time", { datetime: entry.at }, clock(entry.at)), " ",
    el("span", { class: "source" }, SOURCES[entry.source] ?? entry.source), " ",
    el("span", { class: "change" }, entry.change),
    el("div", { class: "detail" }, entry.detail));
}

function callItem(call) {
  return el("li", { "data-status": String(call.status) },
    el("time", { datetime: call.at }, clock(call.at)), " ",
    el("code", {}, `${call.method} ${call.path}`), ` → ${[call.status, call.refusal].filter(Boolean).join(" ")}`);
}

// ---- Looking again: webhooks reach the service a moment after PortOne's answer. ----

const LOOK_AGAIN_AFTER_MS = [300, 700, 1000, 2000, 3000, 5000];
let followUps = 0;

async function followUp(orderId) {
  const mine = ++followUps; // a later step starts its own series
  for (const wait of LOOK_AGAIN_AFTER_MS) {
    await sleep(wait);
    if (mine !== followUps || current?.orderId !== orderId) return;
    await look(orderId).catch(() => {});
  }
}

// The timeline once `expected` holds of it, looking every 300 ms; null after `seconds`.
async function until(orderId, expected, seconds = 20) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    const timeline = await look(orderId);
    if (timeline !== null && expected(timeline)) return timeline;
    await sleep(300);
  }
  return null;
}
