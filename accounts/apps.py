from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Customer accounts: sign-in, sign-out, password reset and (optionally) sign-up
    pages in the chat's look. Staff keep the admin login; their accounts are made there."""

    name = "accounts"
    verbose_name = "Customer accounts"
