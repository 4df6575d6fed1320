-- billing: a Stripe/Zuora-style subscription billing system in schema `billing`. One holder-name
-- field, E.164 phones, ISO alpha-3 countries ('DEU'), lower-case currency codes, money in integer
-- cents, times as epoch seconds (bigint) except payments (timestamptz), a Postgres enum for the
-- account status, jsonb metadata. Account numbers are natural keys that get renumbered now and then:
-- invoices and payments follow via ON UPDATE CASCADE.
-- Plain SQL, idempotent, no psql meta-commands: applied once by `goldstream stack up` to database billing.

CREATE SCHEMA IF NOT EXISTS billing;

DO $$
BEGIN
    CREATE TYPE billing.account_status AS ENUM ('active', 'past_due', 'suspended', 'closed');
EXCEPTION WHEN duplicate_object THEN NULL;
END
$$;

CREATE TABLE IF NOT EXISTS billing.plans (
    plan_code   text PRIMARY KEY,                   -- 'pro-monthly'
    name        text NOT NULL,
    unit_amount bigint NOT NULL,                    -- cents
    currency    char(3) NOT NULL,                   -- lower case: 'eur'
    billing_interval text NOT NULL CHECK (billing_interval IN ('month', 'year')),
    active      boolean NOT NULL DEFAULT true
);

CREATE TABLE IF NOT EXISTS billing.accounts (
    account_number text PRIMARY KEY,                -- 'ACC-100234'; renumbered now and then
    holder_name    text NOT NULL,                   -- one field, as on the contract or card
    company_name   text,
    email          text,
    phone          text,                            -- E.164: '+4930123456'
    address_line1  text,
    address_line2  text,
    city           text,
    postal_code    text,
    country        char(3),                         -- ISO 3166 alpha-3
    tax_id         text,
    currency       char(3) NOT NULL,                -- lower case
    status         billing.account_status NOT NULL DEFAULT 'active',
    balance_cents  bigint NOT NULL DEFAULT 0,
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created        bigint NOT NULL,                 -- epoch seconds
    updated        bigint NOT NULL                  -- epoch seconds
);

CREATE TABLE IF NOT EXISTS billing.invoices (
    invoice_id     text PRIMARY KEY,                -- 'in_1Nq...' opaque id
    account_number text NOT NULL REFERENCES billing.accounts (account_number)
                   ON UPDATE CASCADE ON DELETE CASCADE,
    number         text NOT NULL UNIQUE,            -- 'INV-2024-000123'
    status         text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    currency       char(3) NOT NULL,
    subtotal       bigint NOT NULL,                 -- cents
    tax            bigint NOT NULL DEFAULT 0,
    total          bigint NOT NULL,
    amount_paid    bigint NOT NULL DEFAULT 0,
    period_start   bigint NOT NULL,                 -- epoch seconds
    period_end     bigint NOT NULL,
    due_date       bigint,
    created        bigint NOT NULL,
    memo           text
);
CREATE INDEX IF NOT EXISTS invoices_account_number_idx ON billing.invoices (account_number);
ALTER TABLE billing.invoices REPLICA IDENTITY FULL;

CREATE TABLE IF NOT EXISTS billing.invoice_lines (
    invoice_id  text NOT NULL REFERENCES billing.invoices (invoice_id) ON DELETE CASCADE,
    line_no     integer NOT NULL,
    plan_code   text REFERENCES billing.plans (plan_code),
    description text NOT NULL,
    quantity    integer NOT NULL DEFAULT 1,
    unit_amount bigint NOT NULL,
    amount      bigint NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);

CREATE TABLE IF NOT EXISTS billing.payments (
    payment_id     uuid PRIMARY KEY,
    invoice_id     text NOT NULL REFERENCES billing.invoices (invoice_id) ON DELETE CASCADE,
    account_number text NOT NULL REFERENCES billing.accounts (account_number)
                   ON UPDATE CASCADE ON DELETE CASCADE,
    amount         bigint NOT NULL,                 -- cents
    currency       char(3) NOT NULL,
    method         text NOT NULL CHECK (method IN ('card', 'sepa_debit', 'bank_transfer', 'paypal')),
    card_last4     text,
    status         text NOT NULL CHECK (status IN ('succeeded', 'failed', 'refunded')),
    paid_at        timestamptz NOT NULL,
    raw_response   jsonb
);
CREATE INDEX IF NOT EXISTS payments_invoice_id_idx ON billing.payments (invoice_id);
CREATE INDEX IF NOT EXISTS payments_account_number_idx ON billing.payments (account_number);
