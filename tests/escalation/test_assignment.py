"""Fair assignment: capacity, round robin, the ordered queue and its drain, silent
assignees, supervisors, and the rules under concurrency (threads with their own
connections: on PostgreSQL the row locks are what keeps them apart)."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from chat.models import Conversation, Message
from chat.selectors import display_name
from chat.services import message_append
from config import roles
from escalation import selectors, services
from escalation.models import AgentPresence, Ticket
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_agents(make_user):
    """``make_agents(2, 3)``: agents on duty with those capacities, in that order."""

    def make(*capacities: int, prefix: str = "agent"):
        made = []
        for i, capacity in enumerate(capacities):
            user = make_user(
                roles.AGENTS, username=f"{prefix}{i}", first_name=f"Agent{i}", last_name="Q"
            )
            services.agent_capacity_set(agent=user, capacity=capacity)
            services.agent_presence_set(agent=user, on_duty=True)
            made.append(user)
        return made

    return make


def escalate(text: str = "I need a person", *, priority: str = "normal", customer=None):
    """A customer message and its escalation, through the services the chat uses."""
    conversation = ConversationFactory(customer=customer)
    message, _ = message_append(conversation=conversation, role=Message.Role.CUSTOMER, text=text)
    ticket, _ = services.escalation_open(
        conversation=conversation,
        reason="human_request",
        priority=priority,
        trigger_message=message,
    )
    ticket.refresh_from_db()
    return ticket


def owners(tickets):
    for ticket in tickets:
        ticket.refresh_from_db()
    return [ticket.assigned_agent for ticket in tickets]


def load(agent) -> int:
    return Ticket.objects.filter(status="assigned", assigned_agent=agent).count()


def test_new_ticket_goes_to_the_agent_with_most_free_capacity(make_agents):
    small, large = make_agents(1, 3)
    assert owners([escalate()]) == [large]  # 3 free against 1
    assert owners([escalate(), escalate()]) == [large, small]  # 2 against 1, then 1 and 1


def test_round_robin_among_equals_then_the_queue(make_agents):
    a, b = make_agents(2, 2)
    tickets = [escalate(f"question {i}") for i in range(5)]
    assert owners(tickets) == [a, b, a, b, None]
    assert tickets[4].status == Ticket.Status.OPEN
    assert (load(a), load(b)) == (2, 2)


def test_queue_is_drained_in_order_when_capacity_frees(make_agents):
    (agent,) = make_agents(1)
    first = escalate("first")
    normal = escalate("normal, waiting longest")
    urgent = escalate("urgent, came later", priority="urgent")
    assert owners([first, normal, urgent]) == [agent, None, None]
    assert [t.pk for t in selectors.tickets_queued()] == [urgent.pk, normal.pk]

    services.ticket_claim(ticket=first, agent=agent)
    services.ticket_resolve(ticket=first, agent=agent, outcome="approved")
    assert owners([urgent, normal]) == [agent, None]  # most urgent first

    services.ticket_claim(ticket=urgent, agent=agent)
    services.conversation_hand_back(conversation=urgent.conversation, agent=agent)
    assert owners([normal]) == [agent]  # the hand-back freed the place too


def test_hand_back_ends_the_ticket_and_its_clock_in_one_step(escalated, agent):
    services.ticket_claim(ticket=escalated, agent=agent)
    services.conversation_hand_back(conversation=escalated.conversation, agent=agent)
    escalated.refresh_from_db()
    assert (escalated.status, escalated.outcome) == ("closed", "handed_back")
    assert escalated.closed_at is not None and escalated.resolution_seconds is not None
    assert escalated not in selectors.tickets_for_inbox()
    assert escalated.conversation.handling == Conversation.Handling.ASSISTANT
    # asking for a person again opens a new ticket
    again, created = services.escalation_open(
        conversation=escalated.conversation, reason="human_request"
    )
    assert created and again.pk != escalated.pk


def test_coming_on_duty_and_raising_capacity_drain_the_queue(make_agents, make_user):
    (busy,) = make_agents(1)
    tickets = [escalate(f"q{i}") for i in range(3)]
    assert owners(tickets) == [busy, None, None]

    services.agent_capacity_set(agent=busy, capacity=2)
    assert owners(tickets) == [busy, busy, None]

    late = make_user(roles.AGENTS, username="late")
    services.agent_presence_set(agent=late, on_duty=True)
    assert owners(tickets) == [busy, busy, late]


def test_capacity_is_validated(agent):
    for bad in (0, 21, "3", True):
        with pytest.raises(services.EscalationError):
            services.agent_capacity_set(agent=agent, capacity=bad)
    assert services.agent_capacity_set(agent=agent, capacity=5).capacity == 5


def test_a_ticket_assigned_to_one_agent_is_not_taken_by_another(
    make_agents, second_agent, admin_member
):
    (owner,) = make_agents(1)
    ticket = escalate()
    with pytest.raises(services.TakeoverConflict, match="assigned to Agent0 Q"):
        services.ticket_claim(ticket=ticket, agent=second_agent)
    services.ticket_claim(ticket=ticket, agent=owner)
    ticket.conversation.refresh_from_db()
    assert ticket.conversation.assigned_agent == owner


def test_a_supervisor_may_take_over_an_assigned_ticket(make_agents, admin_member):
    (owner,) = make_agents(1)
    ticket = escalate()
    queued = escalate("waiting")
    assert owners([ticket, queued]) == [owner, None]
    services.ticket_claim(ticket=ticket, agent=admin_member)
    ticket.refresh_from_db()
    assert ticket.assigned_agent == admin_member
    # the place the supervisor took freed: the waiting ticket went to the agent
    assert owners([queued]) == [owner]


def test_silent_assignee_who_never_took_it_loses_it_and_goes_off_duty(make_agents, settings):
    first, second = make_agents(1, 1)
    ticket, other = escalate("one"), escalate("two")
    assert owners([ticket, other]) == [first, second]
    waiting = escalate("three")  # both agents are full

    assert services.tickets_return_silent() == 0  # not yet
    later = timezone.now() + timedelta(seconds=settings.ESCALATION_ASSIGNEE_REPLY_SECONDS + 1)
    services.ticket_claim(ticket=other, agent=second)
    message_append(
        conversation=other.conversation, role=Message.Role.AGENT, text="Hi!", author=second
    )
    assert services.tickets_return_silent(now=later) == 1  # only the silent one

    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.OPEN and ticket.assigned_agent is None
    assert ticket.returned_from == first
    note = ticket.conversation.messages.filter(visibility="internal").last()
    assert note.text.startswith("Back in the queue: Agent0 Q did not reply within 5 minutes")
    assert not AgentPresence.objects.get(agent=first).on_duty  # away: no more tickets
    # nobody has room: it waits, ahead of the later ticket (it has waited longest)
    assert [t.pk for t in selectors.tickets_queued()] == [ticket.pk, waiting.pk]
    assert services.tickets_return_silent(now=later) == 0  # idempotent


def test_silent_assignee_who_took_it_over_hands_it_to_the_next_agent(make_agents, settings):
    first, second = make_agents(1, 1)
    ticket = escalate()
    assert owners([ticket]) == [first]
    services.ticket_claim(ticket=ticket, agent=first)
    later = timezone.now() + timedelta(seconds=settings.ESCALATION_ASSIGNEE_REPLY_SECONDS + 1)
    assert services.tickets_return_silent(now=later) == 1

    ticket.refresh_from_db()
    conversation = ticket.conversation
    conversation.refresh_from_db()
    assert ticket.assigned_agent == second  # the queue gave it on, never back to first
    assert conversation.handling == Conversation.Handling.WAITING_FOR_HUMAN
    notice = conversation.messages.filter(role="system", visibility="public").last()
    assert "Agent0 Q had to step away" in notice.text
    assert AgentPresence.objects.get(agent=first).on_duty  # they were working


def test_going_off_duty_returns_tickets_not_yet_taken(make_agents):
    leaving, staying = make_agents(2, 2)
    kept, given = escalate("taken"), escalate("only given")
    assert owners([kept, given]) == [leaving, staying]
    services.ticket_claim(ticket=kept, agent=leaving)
    services.agent_capacity_set(agent=staying, capacity=1)
    third = escalate("three")
    assert owners([third]) == [leaving]
    services.agent_presence_set(agent=leaving, on_duty=False)
    assert owners([kept, third]) == [leaving, None]  # the one being talked about stays


def test_supervisor_reassigns_and_agents_may_not(make_agents, admin_member):
    first, second = make_agents(1, 1)
    ticket = escalate()
    assert owners([ticket]) == [first]
    services.ticket_claim(ticket=ticket, agent=first)
    with pytest.raises(services.NotSupervisor):
        services.ticket_reassign(ticket=ticket, agent=second, by=first)

    services.ticket_reassign(ticket=ticket, agent=second, by=admin_member)
    ticket.refresh_from_db()
    conversation = ticket.conversation
    conversation.refresh_from_db()
    assert ticket.assigned_agent == second and ticket.returned_from == first
    assert conversation.handling == Conversation.Handling.WAITING_FOR_HUMAN
    notice = conversation.messages.filter(role="system", visibility="public").last()
    assert "passing you to Agent1 Q" in notice.text
    note = conversation.messages.filter(visibility="internal").last()
    assert note.text == (
        f"{display_name(admin_member)} assigned the ticket to Agent1 Q (it was Agent0 Q's)."
    )

    # back to the queue: it goes to the agent with room, never back to the one it left
    services.ticket_reassign(ticket=ticket, agent=None, by=admin_member)
    ticket.refresh_from_db()
    assert (ticket.assigned_agent, ticket.returned_from) == (first, second)


def test_waiting_status_gives_places_and_an_estimate_from_handle_times(make_agents, monkeypatch):
    (agent,) = make_agents(2)
    start = timezone.now()
    clock = {"now": start}
    monkeypatch.setattr(timezone, "now", lambda: clock["now"])
    # three tickets handled in 4, 6 and 8 minutes: the typical handle time is 6 minutes
    for minutes in (4, 6, 8):
        ticket = escalate()
        services.ticket_claim(ticket=ticket, agent=agent)
        clock["now"] += timedelta(minutes=minutes)
        services.agent_presence_touch(agent=agent)  # the console's heartbeat
        services.ticket_resolve(ticket=ticket, agent=agent, outcome="approved")
    busy = [escalate("busy 1"), escalate("busy 2")]
    assert owners(busy) == [agent, agent]
    first, second = escalate("first"), escalate("second")

    status = selectors.waiting_status(conversation_id=second.conversation_id)
    # 2 places ahead-and-including, capacity 2 on duty, 6 minutes each: 6 minutes
    assert status == {
        "state": "queued",
        "position": 2,
        "estimate_minutes": 6,
        "estimate_samples": 3,
        "someone_on_duty": True,
        "agent_name": "",
    }
    assert selectors.waiting_status(conversation_id=first.conversation_id)["position"] == 1
    assigned = selectors.waiting_status(conversation_id=busy[0].conversation_id)
    assert assigned == {"state": "assigned", "agent_name": "Agent0 Q", "someone_on_duty": True}

    services.agent_presence_set(agent=agent, on_duty=False)
    nobody = selectors.waiting_status(conversation_id=second.conversation_id)
    assert nobody["estimate_minutes"] is None and not nobody["someone_on_duty"]


def test_no_estimate_without_enough_finished_tickets(make_agents):
    make_agents(1)
    escalate()
    queued = escalate()
    status = selectors.waiting_status(conversation_id=queued.conversation_id)
    assert (status["position"], status["estimate_minutes"]) == (1, None)


# --- concurrency ---------------------------------------------------------------------------


def _run_in_threads(jobs):
    """Run each job in its own thread (own database connection), all released at once;
    returns the exceptions they raised."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(job):
        try:
            barrier.wait()
            job()
        except BaseException as exc:  # collected and asserted by the test
            with lock:
                errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def assert_one_owner_each_and_capacity_kept(tickets, agents):
    capacity = {p.agent_id: p.capacity for p in AgentPresence.objects.all()}
    for ticket in tickets:
        ticket.refresh_from_db()
        conversation = Conversation.objects.get(pk=ticket.conversation_id)
        starts = conversation.messages.filter(marker=Message.Marker.HUMAN_START).count()
        assert starts <= 1, ticket  # taken over once at most: never by two agents
        if conversation.handling == Conversation.Handling.HUMAN:
            assert conversation.assigned_agent_id == ticket.assigned_agent_id, ticket
            assert starts == 1, ticket
        if ticket.status == Ticket.Status.OPEN:
            assert ticket.assigned_agent_id is None
    for agent in agents:
        assert load(agent) <= capacity[agent.pk], (agent, load(agent), capacity[agent.pk])


@pytest.fixture
def slow_load_reads(monkeypatch):
    """Widen the race: every read of the agents' loads takes a moment before the drain
    acts on it (what a busy database does), so drains that are not kept apart by the
    locks would act on the same stale loads."""
    import time

    read = selectors.agent_loads

    def slow(**kwargs):
        loads = read(**kwargs)
        time.sleep(0.05)
        return loads

    monkeypatch.setattr(selectors, "agent_loads", slow)


@pytest.mark.django_db(transaction=True)
def test_concurrent_escalations_respect_capacity(make_agents, customer, slow_load_reads):
    """Rounds of simultaneous escalations against agents with little room: each round
    the agents' places are filled exactly, never beyond, and the rest wait."""
    agents = make_agents(1, 1, 2)  # four places
    for round_ in range(4):
        conversations = [ConversationFactory(customer=customer) for _ in range(6)]
        messages = [
            message_append(conversation=c, role=Message.Role.CUSTOMER, text="help")[0]
            for c in conversations
        ]
        jobs = [
            (
                lambda c=c, m=m: services.escalation_open(
                    conversation=c, reason="human_request", trigger_message=m
                )
            )
            for c, m in zip(conversations, messages, strict=True)
        ]
        assert _run_in_threads(jobs) == [], round_
        tickets = list(Ticket.objects.filter(conversation__in=conversations))
        assert len(tickets) == 6
        assert sorted(load(a) for a in agents) == [1, 1, 2], round_
        assert Ticket.objects.filter(status="open").count() == 2, round_
        assert_one_owner_each_and_capacity_kept(tickets, agents)
        # the round's tickets end; the next round starts with empty places
        for ticket in Ticket.objects.filter(status__in=["open", "assigned"]):
            services.ticket_close(ticket=ticket, outcome="abandoned")
        for agent in agents:
            services.agent_presence_touch(agent=agent)


@pytest.mark.django_db(transaction=True)
def test_takeovers_racing_the_queue_leave_one_owner_each(
    make_agents, make_user, customer, slow_load_reads
):
    """Queued tickets: agents who take them over themselves race agents coming on duty
    and raising their capacity (the queue assigning), and the owners of assigned tickets
    resolving them (the queue draining)."""
    assigned_agents = make_agents(1, 1)
    tickets = [escalate(f"q{i}", customer=customer) for i in range(8)]
    assert [load(a) for a in assigned_agents] == [1, 1]
    first_two = [t for t in tickets if t.assigned_agent_id is not None]
    assert [t.assigned_agent for t in first_two] == assigned_agents
    queued = [t for t in tickets if t.assigned_agent_id is None]
    grabbers = [make_user(roles.AGENTS, username=f"grab{i}") for i in range(2)]
    newcomer = make_user(roles.AGENTS, username="newcomer")
    services.agent_capacity_set(agent=newcomer, capacity=2)

    def grab(agent, ticket):
        def job():
            # someone else got it first: the one refusal expected
            with contextlib.suppress(services.EscalationError):
                services.ticket_claim(ticket=ticket, agent=agent)

        return job

    def resolve(agent, ticket):
        def job():
            services.ticket_claim(ticket=ticket, agent=agent)
            services.ticket_resolve(ticket=ticket, agent=agent, outcome="approved")

        return job

    jobs = [
        grab(grabbers[0], queued[0]),
        grab(grabbers[1], queued[0]),
        grab(grabbers[0], queued[1]),
        grab(grabbers[1], queued[2]),
        lambda: services.agent_presence_set(agent=newcomer, on_duty=True),
        lambda: services.agent_capacity_set(agent=assigned_agents[0], capacity=2),
        resolve(assigned_agents[1], first_two[1]),
    ]
    assert _run_in_threads(jobs) == []
    assert_one_owner_each_and_capacity_kept(tickets, [*assigned_agents, newcomer])
    queued[0].refresh_from_db()
    assert queued[0].assigned_agent_id is not None  # somebody has it, exactly one


def test_a_new_ticket_tells_only_the_customers_whose_place_changed(make_agents, monkeypatch):
    """A queue of waiting customers is not told again for every newcomer behind them
    (a burst of tickets sent every customer an update per ticket); an urgent ticket that
    goes ahead of them does tell them, and a ticket leaving the queue tells everyone."""
    from escalation.services import assignment

    (agent,) = make_agents(1)
    busy = escalate("busy")
    waiting = [escalate(f"waiting {i}") for i in range(3)]
    told: list[str] = []
    # The groups told, read as the commit would (the queue is read once, at commit time).
    monkeypatch.setattr(
        assignment,
        "publish_each_on_commit",
        lambda events: told.extend(group for group, _ in events()),
    )

    newcomer = escalate("newcomer")
    assert told == [assignment.conversation_group(newcomer.conversation_id)]

    told.clear()
    urgent = escalate("smoke from the hub", priority="urgent")
    assert sorted(told) == sorted(
        assignment.conversation_group(t.conversation_id) for t in [urgent, *waiting, newcomer]
    )
    assert selectors.waiting_status(conversation_id=waiting[0].conversation_id)["position"] == 2

    told.clear()
    services.ticket_resolve(ticket=busy, agent=agent, outcome="approved")
    assert len(told) == 5  # the urgent one was assigned; everyone still queued moved up
