"""factory_boy factories shared by every app's tests."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from chat.models import Article, Conversation, CustomerFeedback, Message
from config import roles


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        """``UserFactory(role=roles.AGENTS)`` puts the user in that role's group."""
        if not create or not extracted:
            return
        role = roles.ROLES[extracted]
        self.groups.add(Group.objects.get(name=role.group))
        self.is_staff = role.staff
        self.is_superuser = extracted == roles.ADMINS
        self.save()


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    visitor_id = factory.Faker("uuid4")
    title = factory.Faker("sentence", nb_words=4)


class MessageFactory(factory.django.DjangoModelFactory):
    """Builds a message with the next sequence number of its conversation."""

    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    role = Message.Role.CUSTOMER
    text = factory.Faker("sentence")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        conversation = kwargs["conversation"]
        if "seq" not in kwargs:
            conversation.last_seq += 1
            conversation.save(update_fields=["last_seq"])
            kwargs["seq"] = conversation.last_seq
        return super()._create(model_class, *args, **kwargs)


class ArticleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Article

    slug = factory.Sequence(lambda n: f"article-{n}")
    title = factory.Faker("sentence", nb_words=5)
    category = "Getting started"
    body = factory.Faker("paragraph", nb_sentences=5)


class CustomerFeedbackFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CustomerFeedback

    conversation = factory.SubFactory(ConversationFactory)
    score = 4
