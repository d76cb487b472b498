"""Idempotency-Keys are scoped to the token's `sub` and `department`; no stored response keeps a secret.

Responses stored for `POST /v1/subscriptions` before this revision hold the webhook secret in plain
text; they are rewritten as a replay now answers (`"secret": null`, `"note": "secret_shown_once"`).
The secrets in the subscription table itself are encrypted by the service when it starts
(`services/notifications/secrets_at_rest.py`), since that needs the key its settings derive.

Revision ID: notifications_0004
Revises: notifications_0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

from shared.migrations import scope_idempotency_keys, unscope_idempotency_keys

revision: str = "notifications_0004"
down_revision: str | None = "notifications_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    scope_idempotency_keys()
    op.execute(
        """
        UPDATE idempotency_key
        SET response_body = convert_to(
            (convert_from(response_body, 'UTF8')::jsonb
                || '{"secret": null, "note": "secret_shown_once"}'::jsonb)::text,
            'UTF8'
        )
        WHERE route LIKE '%/v1/subscriptions' AND status_code = 201
            AND convert_from(response_body, 'UTF8')::jsonb ->> 'secret' IS NOT NULL
        """
    )


def downgrade() -> None:
    unscope_idempotency_keys()
