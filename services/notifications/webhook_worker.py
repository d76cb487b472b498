"""`python -m services.notifications.webhook_worker`: a process that only sends webhooks (see `webhooks.worker`)."""

from services.notifications.webhooks.worker import main

if __name__ == "__main__":
    main()
