"""villageami.meters"""
