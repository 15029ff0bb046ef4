"""The sign-up form (the other account pages use Django's own forms)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm


class CustomerSignupForm(UserCreationForm):
    """Username, e-mail (needed for password resets) and a password typed twice."""

    email = forms.EmailField(
        label="E-mail", help_text="We send password-reset links here.", max_length=254
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"]
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this e-mail address already exists.")
        return email

    def save(self, commit: bool = True) -> Any:
        raise NotImplementedError("Accounts are created by accounts.services.customer_signup")
