"use strict";

// ---------------------------------------------------------------------------------------
// A stand-in for PortOne's browser SDK (@portone/browser-sdk 0.1.x), with its contract:
// requestPayment(request) resolves a PaymentResponse {transactionType: "PAYMENT", txId,
// paymentId, paymentToken?, code?, message?, pgCode?, pgMessage?}, with `code` set when
// the payment failed, and `paymentToken` when the channel confirms manually (nothing is
// charged until the shop's server confirms it). Most mobile browsers cannot keep the
// shop's page open: they leave for the payment window, PortOne redirects to
// request.redirectUrl with paymentId, txId and paymentToken (code and message on failure)
// in the query, and the promise resolves undefined.
// The payment window here is the sandbox's customer (/sandbox/payments/{paymentId}/…).
// The tests compile this file against the SDK's own types (tests/test_browser_sdk.py).
// ---------------------------------------------------------------------------------------

/** @typedef {import("@portone/browser-sdk/v2").PaymentRequest} PaymentRequest */
/** @typedef {import("@portone/browser-sdk/v2").PaymentResponse} PaymentResponse */

// What happens inside the window; in real life the device, the channel's settings in
// PortOne's console and the card issuer decide.
const paymentWindow = { mobile: false, manual: false, cardDeclined: false };

/** @type {Pick<typeof import("@portone/browser-sdk/v2"), "requestPayment">} */
const PortOne = {
  async requestPayment(request) {
    const outcome = await payInWindow(request);
    /** @type {PaymentResponse} */
    const response = { transactionType: "PAYMENT", paymentId: request.paymentId, ...outcome };
    if (!paymentWindow.mobile) return response;
    if (request.redirectUrl === undefined) throw new Error("The redirect flow needs a redirectUrl.");
    location.assign(redirectTarget(request.redirectUrl, response));
    return undefined;
  },
};

const DECLINED = "The card issuer declined the payment (sandbox).";

/** @param {PaymentRequest} request */
async function payInWindow(request) {
  const customer = `/sandbox/payments/${encodeURIComponent(request.paymentId)}`;
  const answer = paymentWindow.cardDeclined
    ? await post(`${customer}/fail`, { reason: DECLINED })
    : await post(`${customer}/pay`, {
        method: request.payMethod,
        amount: request.totalAmount,
        currency: request.currency,
        confirm: paymentWindow.manual ? "MANUAL" : "AUTO",
      });
  if (!answer.ok) {
    // The SDK throws, rather than resolves, when the payment cannot even start.
    throw new Error(`PortOne refused to open the payment window (${answer.body?.code}).`);
  }
  const payment = answer.body;
  if (payment.status !== "FAILED") {
    return { txId: payment.transactionId, paymentToken: payment.paymentToken };
  }
  return {
    txId: payment.transactionId,
    code: "FAILURE_TYPE_PG",
    message: inEnglish(payment.failure?.reason, DECLINED),
    pgCode: payment.failure?.pgCode,
    pgMessage: payment.failure?.reason,
  };
}

/**
 * @param {string} redirectUrl
 * @param {PaymentResponse} response
 */
function redirectTarget(redirectUrl, response) {
  const url = new URL(redirectUrl, location.href);
  for (const key of /** @type {const} */ (["paymentId", "txId", "paymentToken", "code", "message"])) {
    if (response[key] !== undefined) url.searchParams.set(key, response[key]);
  }
  return url.href;
}
