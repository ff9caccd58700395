"""The browser's half of the contract, compiled against PortOne's own `@portone/browser-sdk`.

An order's `checkout` is exactly what the page passes to `PortOne.requestPayment`, typed as
the SDK (`v2`) types its `PaymentRequest`. Real checkouts, from `POST /orders` with every
setting and with none, are written out as TypeScript (`const checkout = <its JSON> as
const`) and spread into `requestPayment` for a card and for a virtual account; the
pinned `tsc` (strict, exact optional properties) must accept them.

The README's browser code is compiled as well: every code block (```js or ```ts) right
after the line `<!-- type-checked against @portone/browser-sdk -->`. A block is read as a
TypeScript ES module in a browser (`import`, top-level `await`, the DOM's `fetch` and
`alert`) and may assume exactly one declaration more, prepended to it:

    declare const order: { checkout: <a real checkout's exact type> };

the order the shop's backend created and handed to the page. Each block is compiled once
with each real checkout (every setting, none), so it must not rely on a parameter that may
be absent. Anything else it uses it imports, from "@portone/browser-sdk/v2" only.

So is the demo page's stand-in for the SDK (`app/sandbox/assets/portone-standin.js`), as
JavaScript checked by its JSDoc: its `PortOne` is typed as the SDK's `requestPayment`, so
what it resolves (a `paymentToken` on a channel with manual confirmation) is a
`PaymentResponse` as the SDK defines it. The page's own helpers it calls are declared
beside it (`DEMO_PAGE`).

The same `tsc` run must refuse checkouts broken the ways docs/contract.md forbids (a parameter
sent as null, a currency that is no currency code, an amount as text): the harness is known
to catch a regression. The SDK's types also accept PortOne's old `CURRENCY_KRW`, which the
the contract does not (ISO 4217 `KRW`); the checkout tests below hold that line themselves.

Node.js and npm are required: without them these tests fail, never skip. `npm ci` runs
once per lockfile of `tests/browser_sdk/` (tests/typescript.py).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests import typescript
from tests.helpers import create_order, make_settings, mocked_portone
from tests.portone_payloads import STORE_ID
from tests.typescript import OUTSIDE, Source, Verdict

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = "<!-- type-checked against @portone/browser-sdk -->"
FENCES = frozenset({"```js", "```ts", "```javascript", "```typescript"})
BASE_URL = "https://payments.example.com"
STAND_IN = "app/sandbox/assets/portone-standin.js"
# What the stand-in uses of the page's own script (app/sandbox/assets/demo.js).
DEMO_PAGE = """\
type Answer = { ok: boolean; status: number; body: any };
declare function post(url: string, body?: unknown): Promise<Answer>;
declare function inEnglish(text: string | undefined, fallback: string): string;
"""

SETTINGS: dict[str, dict[str, Any]] = {
    "every_setting": {"portone_channel_key": "channel-key-test", "public_base_url": BASE_URL},
    "no_setting": {"portone_channel_key": None, "public_base_url": None},
}

# Checkouts broken as docs/contract.md forbids, each with the parameter tsc must name.
BROKEN: dict[str, tuple[str, Any]] = {
    "null_channel_key": ("channelKey", None),
    "null_redirect_url": ("redirectUrl", None),
    "currency_not_iso": ("currency", "KRW2"),
    "amount_as_text": ("totalAmount", "10000"),
}

REQUEST_PAYMENT = Template("""\
import * as PortOne from "@portone/browser-sdk/v2";

const checkout = $checkout as const;

const card = await PortOne.requestPayment({ ...checkout, payMethod: "CARD" });
const virtualAccount = await PortOne.requestPayment({
  ...checkout,
  payMethod: "VIRTUAL_ACCOUNT",
  virtualAccount: { accountExpiry: { validHours: 1 } },
});

// What the page reads of the answer: a failure's code, else what /payments/complete takes.
for (const response of [card, virtualAccount]) {
  const failure: string | undefined = response?.code;
  const complete: { paymentId: string | undefined; txId: string | undefined } = {
    paymentId: response?.paymentId,
    txId: response?.txId,
  };
  const kind: "PAYMENT" | undefined = response?.transactionType;
  console.log(failure, complete, kind);
}
""")


@dataclass(frozen=True)
class Block:
    """A marked code block of the README; `line` is its first line of code."""

    line: int
    code: str


def marked_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks = []
    for index, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        fence = next((i for i in range(index + 1, len(lines)) if lines[i].strip()), len(lines))
        closing = next((i for i in range(fence + 1, len(lines)) if lines[i].strip() == "```"), 0)
        if fence == len(lines) or lines[fence].strip() not in FENCES or not closing:
            raise ValueError(f"README.md:{index + 1}: no ```js or ```ts block follows {MARKER}")
        blocks.append(Block(fence + 2, "\n".join(lines[fence + 1 : closing]) + "\n"))
    return blocks


def checkout_file(setting: str) -> str:
    return f"checkout.{setting}.ts"


def readme_file(block: Block, setting: str) -> str:
    return f"readme-{block.line}.{setting}.ts"


def broken_file(case: str) -> str:
    return f"broken.{case}.ts"


BLOCKS = marked_blocks(README.read_text(encoding="utf-8"))
COMPILED = ["portone-standin.js", "demo-page.d.ts"]
COMPILED += [checkout_file(setting) for setting in SETTINGS] + [
    readme_file(block, setting) for block in BLOCKS for setting in SETTINGS
]


def request_payment(name: str, checkout: dict[str, Any]) -> Source:
    return Source(name, REQUEST_PAYMENT.substitute(checkout=json.dumps(checkout, indent=2)))


def readme_block(block: Block, setting: str, checkout: dict[str, Any]) -> Source:
    prelude = f"declare const order: {{ checkout: {json.dumps(checkout)} }};\n"
    name = readme_file(block, setting)
    return Source(name, prelude + block.code, "README.md", block.line, prelude.count("\n"))


async def _created_checkout(settings: Settings) -> dict[str, Any]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://service.test") as client,
    ):
        order = await create_order(client)
    checkout: dict[str, Any] = order["checkout"]
    return checkout


@pytest.fixture(scope="module")
def checkouts(database_url: str) -> dict[str, dict[str, Any]]:
    """The `checkout` of an order created through `POST /orders`, by settings."""
    with mocked_portone():
        return {
            name: asyncio.run(_created_checkout(make_settings(database_url, **overrides)))
            for name, overrides in SETTINGS.items()
        }


@pytest.fixture(scope="module")
def sources(checkouts: dict[str, dict[str, Any]]) -> dict[str, Source]:
    every = [request_payment(checkout_file(s), checkout) for s, checkout in checkouts.items()]
    every += [
        readme_block(block, setting, checkout)
        for block in BLOCKS
        for setting, checkout in checkouts.items()
    ]
    every += [
        Source("portone-standin.js", (ROOT / STAND_IN).read_text(encoding="utf-8"), STAND_IN),
        Source("demo-page.d.ts", DEMO_PAGE),
    ]
    every += [
        request_payment(broken_file(case), checkouts["every_setting"] | {parameter: value})
        for case, (parameter, value) in BROKEN.items()
    ]
    return {source.name: source for source in every}


@pytest.fixture(scope="module")
def verdict(sources: dict[str, Source]) -> Verdict:
    """One `tsc` run over every generated source."""
    typescript.install()
    return typescript.type_check(list(sources.values()))


def test_checkout_with_every_setting_carries_each_parameter(
    checkouts: dict[str, dict[str, Any]],
) -> None:
    checkout = checkouts["every_setting"]

    assert checkout == {
        "storeId": STORE_ID,
        "channelKey": "channel-key-test",
        "paymentId": checkout["paymentId"],
        "orderName": "Waffle trainer 2",
        "totalAmount": 10_000,
        "currency": "KRW",
        "redirectUrl": f"{BASE_URL}/payments/return",
    }


def test_checkout_without_settings_leaves_them_out_rather_than_null(
    checkouts: dict[str, dict[str, Any]],
) -> None:
    checkout = checkouts["no_setting"]

    assert sorted(checkout) == ["currency", "orderName", "paymentId", "storeId", "totalAmount"]
    assert None not in checkout.values()
    assert checkout["currency"] == "KRW"


def test_readme_marks_its_browser_code() -> None:
    assert BLOCKS, f"README.md has no code block after {MARKER}"


@pytest.mark.parametrize("name", COMPILED)
def test_browser_code_compiles_against_the_sdk(
    verdict: Verdict, sources: dict[str, Source], name: str
) -> None:
    errors = verdict.errors(name)

    whole_run = [] if verdict.sound else ["", verdict.report()]
    assert not errors, "\n".join([*errors, "", name, sources[name].numbered(), *whole_run])


@pytest.mark.parametrize("case", BROKEN)
def test_sdk_types_refuse_a_broken_checkout(verdict: Verdict, case: str) -> None:
    parameter, _ = BROKEN[case]

    errors = verdict.diagnostics.get(broken_file(case), [])

    assert verdict.sound, verdict.report()
    assert OUTSIDE not in verdict.diagnostics, verdict.report()
    assert any(f"'{parameter}'" in error for error in errors), verdict.report()
