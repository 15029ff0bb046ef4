"""Customer accounts: registration and what happens when a customer signs in."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db import transaction

from chat.services import conversations_claim

# Customers are in this group (``config.roles`` gives it its permissions: none).
CUSTOMERS_GROUP = "customers"


@transaction.atomic
def customer_signup(*, username: str, email: str, password: str) -> User:
    """Create a customer account (the "customers" role, no staff access).

    The caller has validated the password (``AUTH_PASSWORD_VALIDATORS``); this stores
    only its hash.
    """
    user = get_user_model()(username=username, email=email)
    user.set_password(password)
    user.full_clean()
    user.save()
    group, _ = Group.objects.get_or_create(name=CUSTOMERS_GROUP)
    user.groups.add(group)
    return user


def customer_signed_in(*, user: User, visitor_id: str) -> int:
    """After a sign-in on this device: the device's anonymous conversations join the
    account. Returns how many did."""
    return conversations_claim(customer=user, visitor_id=visitor_id)
