"""Migration safety: what a downgrade will do (``plan``, ``render``), proof that each revision
undoes itself (``rehearse``), and online-safety rules for the offline SQL (``lint``, with squawk),
built on statement classification (``classify``) and PostgreSQL's lock levels (``locks``)."""
