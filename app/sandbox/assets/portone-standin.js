"use strict";

// ---------------------------------------------------------------------------------------
// A stand-in for PortOne's browser SDK (@portone/browser-sdk 0.1.x), with its contract:
// requestPayment(request) resolves a PaymentResponse {transactionType: "PAYMENT", txId,
// paymentId, code?, message?, pgCode?, pgMessage?}, with `code` set when the payment
// failed. Most mobile browsers cannot keep the shop's page open: they leave for the
// payment window, PortOne redirects to request.redirectUrl with paymentId and txId (code
// and message on failure) in the query, and the promise resolves undefined.
// The payment window here is the sandbox's customer (/sandbox/payments/{paymentId}/…).
// ---------------------------------------------------------------------------------------

// What happens inside the window; in real life the device and the card issuer decide.
const paymentWindow = { mobile: false, cardDeclined: false };

const PortOne = {
  async requestPayment(request) {
    const outcome = await payInWindow(request);
    const response = { transactionType: "PAYMENT", paymentId: request.paymentId, ...outcome };
    if (!paymentWindow.mobile) return response;
    location.assign(redirectTarget(request.redirectUrl, response));
    return undefined;
  },
};

const DECLINED = "The card issuer declined the payment (sandbox).";

async function payInWindow(request) {
  const customer = `/sandbox/payments/${encodeURIComponent(request.paymentId)}`;
  const answer = paymentWindow.cardDeclined
    ? await post(`${customer}/fail`, { reason: DECLINED })
    : await post(`${customer}/pay`, {
        method: request.payMethod,
        amount: request.totalAmount,
        currency: request.currency,
      });
  if (!answer.ok) {
    // The SDK throws, rather than resolves, when the payment cannot even start.
    throw new Error(`PortOne refused to open the payment window (${answer.body?.code}).`);
  }
  const payment = answer.body;
  if (payment.status !== "FAILED") return { txId: payment.transactionId };
  return {
    txId: payment.transactionId,
    code: "FAILURE_TYPE_PG",
    message: inEnglish(payment.failure?.reason, DECLINED),
    pgCode: payment.failure?.pgCode,
    pgMessage: payment.failure?.reason,
  };
}

function redirectTarget(redirectUrl, response) {
  const url = new URL(redirectUrl, location.href);
  for (const key of ["paymentId", "txId", "code", "message"]) {
    if (response[key] !== undefined) url.searchParams.set(key, response[key]);
  }
  return url.href;
}
