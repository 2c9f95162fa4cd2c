-- A team's notifications reach its members (issue 20: "the team's" inbox
-- and notifications). Whichever writer adds one for the team's account (an
-- agent hook, the idle sweep, a project entering ERROR), each member gets a
-- row of their own, read and counted on their own; the team's account,
-- which nobody signs in as, keeps none.
CREATE FUNCTION kiln_notifications_to_members() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND role = 'team') THEN
        INSERT INTO notifications (user_id, project_id, session, kind, message, created_at)
        SELECT m.user_id, NEW.project_id, NEW.session, NEW.kind, NEW.message, NEW.created_at
        FROM team_members m WHERE m.team_id = NEW.user_id;
        DELETE FROM notifications WHERE id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER notifications_to_members AFTER INSERT ON notifications
    FOR EACH ROW EXECUTE FUNCTION kiln_notifications_to_members();

-- A member who leaves a team keeps nothing of its projects, their
-- notifications included.
CREATE FUNCTION kiln_forget_team_notifications() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM notifications
    WHERE user_id = OLD.user_id
      AND project_id IN (SELECT id FROM projects WHERE user_id = OLD.team_id);
    RETURN NULL;
END $$;
CREATE TRIGGER team_members_forget_notifications AFTER DELETE ON team_members
    FOR EACH ROW EXECUTE FUNCTION kiln_forget_team_notifications();
