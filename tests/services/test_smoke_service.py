from approvals.rules.lifecycle import Status


def test_it_records_a_contributor_proposal_as_pending(propose):
    action = propose()
    assert action.status == Status.PENDING
